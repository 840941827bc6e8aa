"""Bad input and bad config get a clear message and a non-zero exit, not a traceback."""

from __future__ import annotations

import pytest

from tests.pipeline import footage_path
from tests.services import free_ports
from tests.services import run_camcount as _camcount


def test_ingest_of_a_missing_video_file_says_so():
    result = _camcount("ingest", "--camera-id", "c1", "--source", "/nonexistent/cam.mp4")
    assert result.returncode == 2
    assert "video source not found: /nonexistent/cam.mp4" in result.stderr
    assert "Traceback" not in result.stderr


def test_ingest_to_an_unreachable_broker_says_how_to_fix_it():
    port = free_ports(1)[0]
    result = _camcount("ingest", "--camera-id", "c1", "--source", str(footage_path()),
                       env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert result.returncode == 2
    assert f"127.0.0.1:{port} not reachable" in result.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_a_camera_config_with_an_invalid_line_names_the_field(tmp_path):
    config = tmp_path / "cameras.yaml"
    config.write_text("cameras:\n  gate:\n    lines:\n      - {name: L1, start: [10, 10], end: [10, 10]}\n")
    result = _camcount("analyze", str(footage_path()), "--config", str(config), "--camera-id", "gate")
    assert result.returncode == 2
    assert "cameras.gate.lines[0].end" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_settings_name_the_field():
    result = _camcount("stack", "status", env={"CAMCOUNT_INFERENCE__MAX_BATCH": "-3"})
    assert result.returncode == 2
    assert "inference.max_batch" in result.stderr


@pytest.mark.parametrize("ref", ["no-such-model@production", "yolov4-tiny@9.9.9"])
def test_an_unknown_model_reference_is_a_clear_error(ref, model_registry):
    result = _camcount("models", "show", ref, env={"CAMCOUNT_MODEL__REGISTRY": model_registry})
    assert result.returncode == 2
    assert "MODEL_001" in result.stderr


@pytest.mark.parametrize("camera_id", ["a b", ""])
def test_an_invalid_camera_id_is_refused_before_anything_starts(camera_id):
    result = _camcount("ingest", "--camera-id", camera_id, "--source", str(footage_path()))
    assert result.returncode == 2
    assert "must be non-empty and contain no whitespace" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("ingest", "--camera-id", "c1", "--source", "x", "--fps", "-5"), "argument --fps: '-5' must not be negative"),
    (("ingest", "--camera-id", "c1", "--source", "x", "--fps", "nan"), "argument --fps: 'nan' must be a finite"),
    (("ingest", "--camera-id", "c1", "--source", "x", "--fps", "inf"), "argument --fps: 'inf' must be a finite"),
    (("ingest", "--camera-id", "c1", "--source", "x", "--max-frames", "0"), "argument --max-frames: 0 must be"),
    (("analyze", "x", "--config", "y", "--batch", "0"), "argument --batch: 0 must be at least 1"),
    (("ab", "guard", "--interval", "0"), "argument --interval: '0' must be greater than 0"),
    (("ab", "guard", "--interval", "-1"), "argument --interval: '-1' must be greater than 0"),
    (("--log-level", "bogus", "models", "list"), "argument --log-level: 'bogus' is not a log level"),
    (("bench", "accuracy", "--min-stay-ms", "-5"), "argument --min-stay-ms: -5 must not be negative"),
    (("bench", "accuracy", "--min-distance-px", "-1"), "argument --min-distance-px: '-1' must not be negative"),
])
def test_an_out_of_range_option_is_refused_naming_it(args, message):
    result = _camcount(*args)
    assert result.returncode == 2
    assert message in result.stderr


def test_an_unknown_log_level_setting_names_the_field():
    result = _camcount("models", "list", env={"CAMCOUNT_LOG_LEVEL": "verbose"})
    assert result.returncode == 2
    assert "invalid settings: log_level:" in result.stderr


def test_a_misspelled_settings_key_is_named():
    result = _camcount("models", "list", env={"CAMCOUNT_KAFKA__PARTITONS": "3"})
    assert result.returncode == 2
    assert "invalid settings: kafka.partitons: unknown key" in result.stderr


def test_a_bad_kafka_client_setting_is_named_at_once_not_reported_as_an_unreachable_broker():
    port = free_ports(1)[0]
    result = _camcount("ingest", "--camera-id", "c1", "--source", str(footage_path()),
                       env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
                            "CAMCOUNT_KAFKA__CLIENT_CONFIG": '{"bogus.prop": "1"}'}, timeout=10)
    assert result.returncode == 2
    assert 'No such configuration property: "bogus.prop"' in result.stderr


def test_a_camera_config_that_is_not_text_is_a_clear_error():
    result = _camcount("analyze", str(footage_path()), "--config", str(footage_path()))
    assert result.returncode == 2
    assert "not a camera config YAML" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_output_path_that_is_a_directory_is_named(tmp_path, model_registry):
    result = _camcount("analyze", str(footage_path()), "--config", "config/cameras.yaml", "--per-frame",
                       str(tmp_path), "--quiet", env={"CAMCOUNT_MODEL__REGISTRY": model_registry})
    assert result.returncode == 2
    assert f"error: {tmp_path}: Is a directory" in result.stderr


def test_an_experiment_file_that_is_not_yaml_is_a_clear_error(tmp_path):
    definition = tmp_path / "experiment.yaml"
    definition.write_text("name: [unclosed\n")
    result = _camcount("ab", "start", str(definition))
    assert result.returncode == 2
    assert f"{definition}: not a valid YAML or JSON experiment definition" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("manifest, message", [
    ("{not json", "not valid JSON"),
    ('{"bogus": 1}', "invalid manifest: name: Field required"),
])
def test_an_invalid_model_manifest_is_a_clear_error(tmp_path, manifest, message):
    path = tmp_path / "manifest.json"
    path.write_text(manifest)
    result = _camcount("models", "register", "README.md", "--manifest", str(path),
                       env={"CAMCOUNT_MODEL__REGISTRY": str(tmp_path / "registry")})
    assert result.returncode == 2
    assert f"{path}: {message}" in result.stderr


def test_import_darknet_without_its_flags_says_which_it_needs(tmp_path):
    result = _camcount("models", "import-darknet", env={"CAMCOUNT_MODEL__REGISTRY": str(tmp_path)})
    assert result.returncode == 2
    assert ("import-darknet needs --default, --zoo NAME, or all of --cfg --weights --names --name --version"
            in result.stderr)


def test_demo_with_missing_footage_says_how_to_get_it():
    result = _camcount("demo", "--footage", "/nonexistent/vtest.avi")
    assert result.returncode == 2
    assert "footage /nonexistent/vtest.avi not found: run `make footage`" in result.stderr


def test_ab_status_with_redis_unreachable_names_the_address():
    port = free_ports(1)[0]
    result = _camcount("ab", "status", env={"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def _one_error_line(result, command: str) -> str:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"camcount {command}: error: ")
    return lines[0]


def test_a_darknet_cfg_it_cannot_convert_is_one_line(tmp_path):
    (tmp_path / "bad.cfg").write_text("[net]\nbatch=1\n[convolutional]\nsize=3\n")
    for name in ("bad.weights", "bad.names"):
        (tmp_path / name).write_bytes(b"")
    result = _camcount("models", "import-darknet", "--cfg", str(tmp_path / "bad.cfg"), "--weights",
                       str(tmp_path / "bad.weights"), "--names", str(tmp_path / "bad.names"), "--name", "bad",
                       "--version", "1.0.0", env={"CAMCOUNT_HOME": str(tmp_path)})

    assert "needs the option 'width'" in _one_error_line(result, "models")


def test_an_unreachable_s3_registry_is_one_line_naming_the_endpoint(tmp_path):
    (port,) = free_ports(1)
    result = _camcount("models", "list", env={
        "CAMCOUNT_MODEL__REGISTRY": "s3://camcount-models", "CAMCOUNT_HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_MAX_ATTEMPTS": "1"})

    assert f"cannot reach http://127.0.0.1:{port}" in _one_error_line(result, "models")


def test_a_malformed_ground_truth_file_is_one_line(tmp_path):
    truth = tmp_path / "truth.json"
    truth.write_text('{"video": "vtest.avi", "lines": 3}')
    result = _camcount("bench", "accuracy", "--truth", str(truth), "--footage", str(tmp_path / "none.avi"))

    assert f"{truth}: no 'lines' mapping" in _one_error_line(result, "bench")


def test_count_with_an_unreachable_broker_waits_then_says_how_to_fix_it():
    (port,) = free_ports(1)
    result = _camcount("count", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})

    line = _one_error_line(result, "count")
    assert f"127.0.0.1:{port} not reachable after 15s" in line and "KAFKA_BOOTSTRAP_SERVERS" in line
