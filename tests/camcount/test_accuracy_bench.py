"""``camcount bench accuracy`` scores every line of every truth file, one analysis per footage, on a real (tiny)
model."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from camcount.accuracy import comparison_rows, default_truth_files, run_accuracy
from counting.evaluation import load_truth, parse_all_lines, parse_occupancy
from foundation.errors import UsageError
from foundation.settings import Settings
from models.loading import open_model_registry
from models.tiny_graphs import register_null_detector
from tests.services import run_camcount

MODEL = "null-detector@1.0.0"


@pytest.fixture
def settings(tmp_path, monkeypatch) -> Settings:
    monkeypatch.setenv("CAMCOUNT_HOME", str(tmp_path / "home"))
    settings = Settings()
    # One person-sized box in the middle of every frame: a track confirmed from frame 2 on, that never moves.
    register_null_detector(open_model_registry(settings), tmp_path)
    return settings


@pytest.fixture
def data_dir(tmp_path) -> Path:
    clip = tmp_path / "data" / "clip"
    clip.mkdir(parents=True)
    for i in range(10):
        cv2.imwrite(str(clip / f"{i:03d}.png"), np.full((240, 320, 3), 90 + i, np.uint8))
    return tmp_path / "data"


def write(path: Path, video: str, lines: dict, occupancy: list | None = None) -> Path:
    path.write_text(json.dumps({"video": video, "lines": lines, **({"occupancy": occupancy} if occupancy else {})}))
    return path


def vertical(tmp_path) -> Path:
    return write(tmp_path / "a.json", "clip",
                 {"V": {"p1": [100, 0], "p2": [100, 240], "crossings": [{"frame": 5, "direction": "right"}]}})


def horizontal(tmp_path) -> Path:
    return write(tmp_path / "b.json", "clip", {"H": {"p1": [0, 200], "p2": [320, 200], "crossings": []}},
                 occupancy=[{"frame": 7, "persons": 3}, {"frame": 6, "persons": 1}])


def test_all_lines_of_all_files_of_one_footage_are_scored_from_one_analysis(settings, tmp_path, data_dir):
    report = run_accuracy(settings, [vertical(tmp_path), horizontal(tmp_path)], model_ref=MODEL, data_dir=data_dir,
                          batch_size=4)

    assert report["model"] == MODEL and len(report["footages"]) == 1
    footage = report["footages"][0]
    assert (footage["video"], footage["frames"]) == ("clip", 10)
    lines = {line["line"]: line for line in footage["lines"]}
    assert list(lines) == ["V", "H"]
    assert lines["V"]["recall"] == 0.0 and [m["frame"] for m in lines["V"]["misses"]] == [5]
    assert lines["V"]["directions"]["in"] == {"truth": 0, "emitted": 0, "error_pct": None}
    assert lines["V"]["directions"]["out"]["truth"] == 1  # walking right over a line drawn downwards is out
    assert (lines["H"]["precision"], lines["H"]["recall"], lines["H"]["meets_bar"]) == (1.0, 1.0, True)
    # one confirmed track in view at frames 6 and 7, against 1 and 3 hand-counted
    assert footage["occupancy"]["tracks"]["mae"] == 1.0 and footage["occupancy"]["tracks"]["bias"] == -1.0
    assert report["summary"]["lines"] == 2 and report["summary"]["lines_meeting_bar"] == 1


def test_lines_can_be_chosen_by_name(settings, tmp_path, data_dir):
    report = run_accuracy(settings, [vertical(tmp_path), horizontal(tmp_path)], model_ref=MODEL, data_dir=data_dir,
                          lines=["H"], batch_size=4)
    assert [line["line"] for f in report["footages"] for line in f["lines"]] == ["H"]


def test_footage_override_is_refused_when_the_files_label_several_videos(settings, tmp_path, data_dir):
    other = write(tmp_path / "c.json", "other.avi", {"X": {"p1": [0, 0], "p2": [9, 9], "crossings": []}})
    with pytest.raises(UsageError, match="label"):
        run_accuracy(settings, [vertical(tmp_path), other], footage=data_dir / "clip", model_ref=MODEL)


def test_missing_footage_says_how_to_get_it(settings, tmp_path, data_dir):
    truth = write(tmp_path / "s.json", "sample.mp4", {"S": {"p1": [0, 0], "p2": [9, 9], "crossings": []}})
    with pytest.raises(UsageError, match="make sample-footage"):
        run_accuracy(settings, [truth], model_ref=MODEL, data_dir=data_dir)


def test_every_shipped_truth_file_parses_and_its_lines_have_unique_names_per_video():
    names: dict[str, list[str]] = {}
    for path in default_truth_files():
        document = load_truth(path)
        lines = parse_all_lines(document, str(path))
        parse_occupancy(document, str(path))
        assert all(line.crossings for line in lines), f"{path}: a line without crossings"
        names.setdefault(document["video"], []).extend(line.name for line in lines)
    assert names and all(len(set(v)) == len(v) for v in names.values()), names


def test_the_shipped_files_skip_a_missing_footage_and_say_how_to_fetch_it(settings, tmp_path):
    report = run_accuracy(settings, model_ref=MODEL, data_dir=tmp_path / "empty")
    assert report["footages"] == []
    assert {s["video"]: s["fetch"] for s in report["skipped"]} == {"vtest.avi": "make footage",
                                                                   "sample.mp4": "make sample-footage"}


def test_models_scored_with_the_same_settings_compare_side_by_side(settings, tmp_path, data_dir):
    register_null_detector(open_model_registry(settings), tmp_path, box=False, version="2.0.0")  # sees nobody
    truth = [vertical(tmp_path), horizontal(tmp_path)]
    reports = [run_accuracy(settings, truth, model_ref=ref, data_dir=data_dir, batch_size=4)
               for ref in (MODEL, "null-detector@2.0.0")]
    reports[1]["footages"][0]["lines"].pop()  # a line one report lacks is shown as "-"

    rows = comparison_rows(reports)

    assert rows[0] == ["", MODEL, "null-detector@2.0.0"]
    assert rows[1] == ["V (clip, labelled 0/1)", "0/0 P 1.000 R 0.000 NOT met", "0/0 P 1.000 R 0.000 NOT met"]
    assert rows[2] == ["H (clip, labelled 0/0)", "0/0 P 1.000 R 1.000 met", "-"]
    assert rows[3] == ["people in view MAE (clip)", "1.0", "2.0"]
    assert rows[4] == ["lines meeting the bar", "1 of 2", "1 of 2"]


def test_bench_accuracy_with_two_models_prints_both_reports_and_the_comparison(settings, tmp_path, data_dir):
    register_null_detector(open_model_registry(settings), tmp_path, box=False, version="2.0.0")
    args = ("bench", "accuracy", "--truth", str(vertical(tmp_path)), "--data-dir", str(data_dir), "--batch", "4",
            "--model", MODEL, "--model", "null-detector@2.0.0")
    env = {"CAMCOUNT_HOME": str(settings.home)}

    as_json = run_camcount(*args, "--json", env=env)
    as_text = run_camcount(*args, env=env)

    assert as_json.returncode == 0, as_json.stderr
    assert [r["model"] for r in json.loads(as_json.stdout)["models"]] == [MODEL, "null-detector@2.0.0"]
    assert as_text.returncode == 0, as_text.stderr
    assert as_text.stdout.count("all lines: precision") == 2
    assert "side by side, the same truth and settings:" in as_text.stdout
    assert "V (clip, labelled 0/1)" in as_text.stdout



def test_bench_accuracy_states_the_line_settings_it_scored_with_and_takes_overrides(settings, tmp_path, data_dir):
    args = ("bench", "accuracy", "--truth", str(vertical(tmp_path)), "--data-dir", str(data_dir), "--batch", "4",
            "--model", MODEL)
    env = {"CAMCOUNT_HOME": str(settings.home)}

    default = run_camcount(*args, env=env)
    overridden = run_camcount(*args, "--min-stay-ms", "0", "--min-distance-px", "2", env=env)

    assert default.returncode == 0, default.stderr
    assert "lines: hysteresis 4.0 px, minimum stay 500 ms, anchor confidence >= 0.3" in default.stdout
    assert overridden.returncode == 0, overridden.stderr
    assert "lines: hysteresis 2.0 px, minimum stay 0 ms" in overridden.stdout
