"""Frame sources: video files, image folders, and clear errors for what is not one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from producers.sources import FrameSource, SourceError
from tests.pipeline import footage_path


def test_a_missing_path_is_a_clear_error():
    with pytest.raises(SourceError, match="not found"):
        FrameSource("/nonexistent/video.avi")


def test_a_file_that_is_not_a_video_is_a_clear_error(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    with pytest.raises(SourceError, match="cannot open"):
        FrameSource(str(bogus))


def test_an_image_folder_yields_its_images_in_name_order_at_the_given_rate(tmp_path):
    for name, value in (("b.png", 200), ("a.jpg", 100)):
        cv2.imwrite(str(tmp_path / name), np.full((8, 8, 3), value, np.uint8))
    (tmp_path / "readme.txt").write_text("ignored")
    source = FrameSource(str(tmp_path), folder_fps=2.0)
    frames = list(source.frames())
    assert [int(f.image.mean()) for f in frames] == [100, 200]
    assert [f.offset_ms for f in frames] == [0.0, 500.0]
    assert source.frame_count() == 2


def test_an_empty_image_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="holds no images"):
        FrameSource(str(tmp_path))


def test_a_video_file_knows_its_rate_and_length():
    source = FrameSource(str(footage_path()))
    assert source.native_fps == pytest.approx(10.0)
    assert source.frame_count() == 795
