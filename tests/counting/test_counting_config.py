"""Camera config: YAML shape, inheritance from defaults, and errors that name the file and field."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from counting.config import CameraConfigError, LineConfig, load_camera_configs

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> str:
    with pytest.raises(CameraConfigError) as info:
        load_camera_configs(path)
    return str(info.value)


def test_example_config_gives_vtest_the_vertical_line_l1():
    config = load_camera_configs(REPO / "config" / "cameras.yaml").for_camera("vtest")
    assert [(line.name, line.start, line.end) for line in config.lines] == [("L1", (384, 120), (384, 576))]
    assert config.classes == ["person"]
    assert config.anchor == "bottom_center"


def test_unlisted_camera_gets_the_defaults_under_its_own_id():
    config = load_camera_configs(REPO / "config" / "cameras.yaml").for_camera("some-other-cam")
    assert config.camera_id == "some-other-cam"
    assert [line.name for line in config.lines] == ["L1"]


def test_camera_merges_tracker_mapping_into_defaults_and_replaces_lists(tmp_path):
    path = write(tmp_path, """
defaults:
  tracker: {max_gap_frames: 10, min_hits: 2}
  lines: [{name: A, start: [0, 0], end: [10, 0]}]
cameras:
  cam-1:
    tracker: {max_gap_frames: 50}
    lines: [{name: B, start: [0, 0], end: [0, 10]}]
""")
    config = load_camera_configs(path).for_camera("cam-1")
    assert (config.tracker.max_gap_frames, config.tracker.min_hits) == (50, 2)
    assert [line.name for line in config.lines] == ["B"]


def test_line_with_equal_start_and_end_is_reported_with_file_and_field_path(tmp_path):
    path = write(tmp_path, """
cameras:
  cam-1:
    lines: [{name: L1, start: [5, 5], end: [5, 5]}]
""")
    assert error_of(path) == f"{path}: cameras.cam-1.lines[0].end: line start and end are the same point"


def test_duplicate_line_names_are_rejected(tmp_path):
    path = write(tmp_path, """
cameras:
  cam-1:
    lines: [{name: L1, start: [0, 0], end: [1, 0]}, {name: L1, start: [0, 5], end: [1, 5]}]
""")
    assert "cameras.cam-1.lines: duplicate name 'L1' at [0] and [1]" in error_of(path)


def test_collinear_polygon_is_rejected_as_degenerate(tmp_path):
    path = write(tmp_path, """
cameras:
  cam-1:
    zones: [{name: Z, polygon: [[0, 0], [5, 5], [10, 10]]}]
""")
    assert "cameras.cam-1.zones[0].polygon: polygon is degenerate" in error_of(path)


def test_low_threshold_not_below_high_threshold_is_rejected(tmp_path):
    path = write(tmp_path, """
defaults:
  tracker: {high_threshold: 0.4, low_threshold: 0.4}
""")
    assert "defaults.tracker.low_threshold: low_threshold must be below high_threshold" in error_of(path)


def test_misspelt_field_is_rejected_with_its_path(tmp_path):
    path = write(tmp_path, """
cameras:
  cam-1:
    lines: [{name: L1, start: [0, 0], end: [1, 0], min_distance: 3}]
""")
    assert "cameras.cam-1.lines[0].min_distance: Extra inputs are not permitted" in error_of(path)


def test_line_class_override_outside_camera_classes_is_rejected(tmp_path):
    path = write(tmp_path, """
cameras:
  cam-1:
    classes: [person]
    lines: [{name: L1, start: [0, 0], end: [1, 0], classes: [car]}]
""")
    assert "lines[0].classes: ['car'] not in the camera's classes ['person']" in error_of(path)


def test_unknown_camera_without_defaults_asks_for_an_entry_or_defaults(tmp_path):
    path = write(tmp_path, "cameras:\n  cam-1: {}\n")
    with pytest.raises(CameraConfigError, match="'cam-2' is not listed under cameras and there are no defaults"):
        load_camera_configs(path).for_camera("cam-2")


def test_missing_file_is_reported_by_name(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error_of(path).startswith(f"{path}: cannot read camera config")


def test_line_min_anchor_confidence_is_a_probability():
    assert LineConfig(name="L1", start=(0, 0), end=(1, 0)).min_anchor_confidence == 0.3
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        LineConfig(name="L1", start=(0, 0), end=(1, 0), min_anchor_confidence=1.5)
