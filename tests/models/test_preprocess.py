"""Letterboxing into the preallocated uint8 batch, the normalisation to the model's input, and the box mapping between
frame and model input."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import cv2
import numpy as np
import pytest

from models.manifest import ModelManifest
from models.preprocess import BatchPreprocessor, LetterboxTransform, model_input


def manifest(**overrides: Any) -> ModelManifest:
    fields: dict[str, Any] = {
        "name": "toy",
        "version": "1.0.0",
        "format": "yolov5",
        "input_width": 64,
        "input_height": 48,
        "class_names": ["person"],
        "sha256": "0" * 64,
        "created_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    return ModelManifest(**(fields | overrides))


def frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def reference_letterbox(image: np.ndarray, width: int, height: int, fill: int) -> np.ndarray:
    """Straightforward letterbox (new canvas, resize, paste) to compare the optimised path against."""
    src_h, src_w = image.shape[:2]
    scale = min(width / src_w, height / src_h)
    new_w, new_h = round(src_w * scale), round(src_h * scale)
    canvas = np.full((height, width, 3), fill, np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas


@pytest.mark.parametrize(
    ("src_w", "src_h", "input_w", "input_h"),
    [(768, 576, 416, 416), (640, 360, 640, 640), (360, 640, 416, 416), (1080, 1920, 640, 384), (100, 100, 416, 416)],
)
def test_boxes_survive_a_round_trip_to_input_and_back(src_w: int, src_h: int, input_w: int, input_h: int) -> None:
    transform = LetterboxTransform.fit(src_w, src_h, input_w, input_h)
    boxes = np.array([[0, 0, src_w, src_h], [src_w * 0.25, src_h * 0.1, src_w * 0.5, src_h * 0.9]], np.float32)

    np.testing.assert_allclose(transform.to_source(transform.to_input(boxes)), boxes, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize(("src_w", "src_h"), [(768, 576), (576, 768)])
def test_the_whole_frame_maps_inside_the_input_centred(src_w: int, src_h: int) -> None:
    transform = LetterboxTransform.fit(src_w, src_h, 416, 416)

    x1, y1, x2, y2 = transform.to_input(np.array([[0, 0, src_w, src_h]], np.float32))[0]

    assert min(x1, y1) >= 0 and max(x2, y2) <= 416
    assert x1 == pytest.approx(416 - x2, abs=1) and y1 == pytest.approx(416 - y2, abs=1)


def test_to_source_clips_boxes_to_the_frame() -> None:
    transform = LetterboxTransform(scale=0.5, pad_x=0, pad_y=100, src_w=800, src_h=400)

    boxes = transform.to_source(np.array([[-10, 90, 500, 320]], np.float32))

    np.testing.assert_array_equal(boxes, [[0, 0, 800, 400]])


def test_fill_letterboxes_the_bgr_frame_into_its_slot_unchanged_in_colour_and_range() -> None:
    preprocessor = BatchPreprocessor(manifest(), max_batch=2)
    image = frame(80, 30)

    preprocessor.fill(1, image)

    np.testing.assert_array_equal(preprocessor.batch(2)[1], reference_letterbox(image, 64, 48, 114))


def test_model_input_converts_bgr_canvases_to_rgb_nchw_scaled_to_unit_range() -> None:
    canvases = np.stack([frame(64, 48, seed=1), frame(64, 48, seed=2)])

    expected = canvases[..., ::-1].transpose(0, 3, 1, 2) / 255
    np.testing.assert_allclose(model_input(canvases, manifest()), expected, atol=1e-6)


def test_model_input_keeps_bgr_order_when_the_manifest_says_bgr() -> None:
    canvases = frame(64, 48)[None]

    expected = canvases.transpose(0, 3, 1, 2) / 255
    np.testing.assert_allclose(model_input(canvases, manifest(color_order="BGR")), expected, atol=1e-6)


def test_model_input_applies_mean_and_std_after_scaling() -> None:
    canvases = frame(64, 48)[None]

    rgb = canvases[..., ::-1].transpose(0, 3, 1, 2) / 255
    expected = (rgb - np.array([0.5, 0.25, 0.0])[:, None, None]) / np.array([0.5, 0.25, 2.0])[:, None, None]
    normalised = model_input(canvases, manifest(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 2.0)))
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised, expected, atol=1e-5)


def test_padding_takes_the_letterbox_fill_value_even_after_a_differently_shaped_frame() -> None:
    preprocessor = BatchPreprocessor(manifest(letterbox_fill=0), max_batch=1)
    preprocessor.fill(0, np.full((48, 64, 3), 255, np.uint8))

    transform = preprocessor.fill(0, np.full((10, 64, 3), 255, np.uint8))

    slot = preprocessor.batch(1)[0]
    assert transform.pad_y > 0
    assert np.all(slot[: transform.pad_y] == 0)
    assert np.all(slot[transform.pad_y : transform.pad_y + 10] == 255)


def test_filling_different_slots_from_threads_equals_filling_them_in_turn() -> None:
    images = [frame(320 + 40 * i, 240 + 30 * i, seed=i) for i in range(8)]
    sequential = BatchPreprocessor(manifest(), max_batch=8)
    for index, image in enumerate(images):
        sequential.fill(index, image)
    threaded = BatchPreprocessor(manifest(), max_batch=8)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(threaded.fill, range(8), images))

    np.testing.assert_array_equal(threaded.batch(8), sequential.batch(8))


def test_batch_is_a_view_of_the_first_slots() -> None:
    preprocessor = BatchPreprocessor(manifest(), max_batch=4)

    batch = preprocessor.batch(3)

    assert batch.shape == (3, 48, 64, 3) and batch.dtype == np.uint8
    assert np.shares_memory(batch, preprocessor.batch(4))


def test_fill_refuses_a_non_uint8_image_with_a_clear_message() -> None:
    preprocessor = BatchPreprocessor(manifest(), max_batch=1)

    with pytest.raises(ValueError, match="BGR uint8"):
        preprocessor.fill(0, np.zeros((48, 64, 3), np.float32))
