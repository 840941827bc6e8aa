"""Per-model box calibration: height scale by box size in network pixels, clipped to the frame, kept in the manifest."""

import numpy as np
import pytest
from pydantic import ValidationError

from models.calibration import BoxCalibration
from models.default_model import YOLOV3_TINY_BOX_CALIBRATION, calibrate_yolov3_tiny_versions
from models.registry import ModelRegistry
from models.tiny_graphs import register_null_detector

CAL = BoxCalibration(input_size=(608, 608), heights=(40.0, 80.0), scales=(2.0, 1.0))


def test_scale_is_piecewise_linear_in_network_pixels_and_constant_beyond_the_knots():
    # a 768x576 frame is letterboxed into 608x608 at 608/768 = 0.7917
    heights_px = np.array([20.0, 40 / 0.7917, 60 / 0.7917, 80 / 0.7917, 300.0])
    assert CAL.scale_of(heights_px, (768, 576)) == pytest.approx([2.0, 2.0, 1.5, 1.0, 1.0], abs=1e-3)


def test_the_same_box_counts_as_smaller_in_a_larger_frame():
    # 50 px is 50 network px in a 608x608 frame but 25 in a 1216x1216 one
    assert CAL.scale_of(np.array([50.0]), (608, 608)) == pytest.approx([1.75])
    assert CAL.scale_of(np.array([50.0]), (1216, 1216)) == pytest.approx([2.0])


def test_apply_scales_heights_about_the_centre_and_keeps_x():
    boxes = np.array([[100, 200, 120, 240], [300, 100, 400, 400]], np.float32)
    out = CAL.apply(boxes, (608, 608))
    np.testing.assert_allclose(out[0], [100, 180, 120, 260])  # 40 px tall: x2, centre 220 kept
    np.testing.assert_allclose(out[1], [300, 100, 400, 400])  # 300 px tall: x1


def test_apply_clips_to_the_frame():
    out = CAL.apply(np.array([[10, 2, 20, 42], [10, 580, 20, 600]], np.float32), (608, 608))
    assert out[0, 1] == 0.0 and out[1, 3] == 608.0


def test_apply_on_no_boxes_is_empty():
    assert CAL.apply(np.zeros((0, 4), np.float32), (608, 608)).shape == (0, 4)


@pytest.mark.parametrize("heights, scales", [((40.0, 40.0), (1.5, 1.0)), ((40.0,), (1.5, 1.0)), ((40.0,), (0.0,))])
def test_knots_must_increase_match_in_length_and_scale_positively(heights, scales):
    with pytest.raises(ValidationError):
        BoxCalibration(input_size=(608, 608), heights=heights, scales=scales)


def test_calibration_is_stored_in_the_manifest_without_touching_the_model_file(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    manifest = register_null_detector(registry, tmp_path, box_calibration=CAL)
    assert registry.resolve("null-detector@1.0.0").manifest.box_calibration == CAL

    changed = registry.set_box_calibration("null-detector@1.0.0", None)
    assert changed.box_calibration is None and changed.sha256 == manifest.sha256
    registry.verify("null-detector@1.0.0")  # the file still matches its manifest
    assert registry.resolve("null-detector@1.0.0").manifest.box_calibration is None


def test_yolov3_tiny_versions_registered_before_calibrations_get_the_shipped_one(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    register_null_detector(registry, tmp_path, name="yolov3-tiny", version="1.1.0", input_size=608)
    register_null_detector(registry, tmp_path, name="yolov3-tiny", version="1.2.0", input_size=608,
                           source={"kind": "quantized", "parent": "yolov3-tiny@1.1.0"})
    register_null_detector(registry, tmp_path, name="yolov3-tiny", version="2.0.0", input_size=608)

    assert calibrate_yolov3_tiny_versions(registry) == ["yolov3-tiny@1.1.0", "yolov3-tiny@1.2.0"]
    assert registry.resolve("yolov3-tiny@1.2.0").manifest.box_calibration == YOLOV3_TINY_BOX_CALIBRATION
    assert registry.resolve("yolov3-tiny@2.0.0").manifest.box_calibration is None  # another lineage
    assert calibrate_yolov3_tiny_versions(registry) == []  # idempotent


def test_an_older_shipped_calibration_is_refreshed_and_one_set_by_someone_else_is_kept(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    older = YOLOV3_TINY_BOX_CALIBRATION.model_copy(update={"scales": (1.5, 1.0)})
    register_null_detector(registry, tmp_path, name="yolov3-tiny", version="1.1.0", input_size=608,
                           box_calibration=older)
    assert calibrate_yolov3_tiny_versions(registry) == ["yolov3-tiny@1.1.0"]
    assert registry.resolve("yolov3-tiny@1.1.0").manifest.box_calibration == YOLOV3_TINY_BOX_CALIBRATION

    own = CAL.model_copy(update={"input_size": (608, 608), "source": {"labels": "my-camera.json"}})
    registry.set_box_calibration("yolov3-tiny@1.1.0", own)
    assert calibrate_yolov3_tiny_versions(registry) == []
    assert registry.resolve("yolov3-tiny@1.1.0").manifest.box_calibration == own
