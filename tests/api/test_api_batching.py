"""The micro-batcher: when batches start, what they hold, and how each caller gets its own answer or error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest

from api.batching import BatchRun, MicroBatcher
from api.errors import Overloaded, RequestTimeout
from models.detections import Detections
from models.detector import DetectParams


class FakeModel:
    """Answers each image with one box whose confidence is the image's first pixel / 255; records batch sizes."""

    def __init__(self, run_s: float = 0.0, fail: bool = False) -> None:
        self.run_s = run_s
        self.fail = fail
        self.batches: list[int] = []
        self.params: list[DetectParams] = []
        self.running = threading.Event()

    def __call__(self, images: Sequence[np.ndarray], params: Sequence[DetectParams]) -> list[Detections]:
        self.running.set()
        self.batches.append(len(images))
        self.params.extend(params)
        time.sleep(self.run_s)
        if self.fail:
            raise RuntimeError("kernel failed")
        return [Detections([[0, 0, 1, 1]], [image[0, 0, 0] / 255], [p.max_detections]) for image, p in
                zip(images, params)]


def image(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.uint8)


async def _run(batcher: MicroBatcher, values: Sequence[int], timeout_s: float = 5.0) -> list[Detections]:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.detect(image(v), DetectParams(max_detections=v), timeout_s)
                                      for v in values))
    finally:
        await batcher.stop()


def test_a_full_batch_runs_at_once_without_waiting_out_the_delay() -> None:
    model = FakeModel()
    batcher = MicroBatcher(model, max_batch=4, max_delay_ms=10_000)
    started = time.perf_counter()

    results = asyncio.run(_run(batcher, [10, 20, 30, 40]))

    assert time.perf_counter() - started < 2.0
    assert model.batches == [4]
    assert [r.confidence[0] for r in results] == pytest.approx([10 / 255, 20 / 255, 30 / 255, 40 / 255])


def test_each_image_keeps_its_own_parameters_and_answer() -> None:
    model = FakeModel()

    results = asyncio.run(_run(MicroBatcher(model, max_batch=8, max_delay_ms=5), [3, 1, 2]))

    assert [int(r.class_id[0]) for r in results] == [3, 1, 2]


def test_a_lone_image_waits_the_delay_for_company_then_runs_alone() -> None:
    model = FakeModel()
    started = time.perf_counter()

    asyncio.run(_run(MicroBatcher(model, max_batch=8, max_delay_ms=100), [5]))

    assert time.perf_counter() - started >= 0.1
    assert model.batches == [1]


def test_images_arriving_while_the_model_runs_form_the_next_batch() -> None:
    model = FakeModel(run_s=0.3)
    runs: list[BatchRun] = []
    batcher = MicroBatcher(model, max_batch=8, max_delay_ms=0, on_batch=runs.append)

    async def scenario() -> None:
        batcher.start()
        first = asyncio.ensure_future(batcher.detect(image(1), DetectParams(), 5))
        while not model.running.is_set():
            await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batcher.detect(image(v), DetectParams(), 5)) for v in range(2, 12)]
        await asyncio.gather(first, *rest)
        await batcher.stop()

    asyncio.run(scenario())

    assert model.batches == [1, 8, 2]
    assert [run.size for run in runs] == [1, 8, 2] and runs[1].oldest_wait_s > 0.2


def test_a_request_not_answered_in_time_gets_inf_004_and_is_never_run() -> None:
    model = FakeModel(run_s=0.4)
    batcher = MicroBatcher(model, max_batch=1, max_delay_ms=0)

    async def scenario() -> tuple[Detections, BaseException]:
        batcher.start()
        slow = asyncio.ensure_future(batcher.detect(image(1), DetectParams(), 5))
        late = asyncio.ensure_future(batcher.detect(image(2), DetectParams(), 0.1))
        results = await asyncio.gather(slow, late, return_exceptions=True)
        await asyncio.sleep(0.5)
        await batcher.stop()
        return results[0], results[1]

    answered, refused = asyncio.run(scenario())

    assert isinstance(answered, Detections)
    assert isinstance(refused, RequestTimeout) and refused.code == "INF_004" and refused.detail == "request-timeout"
    assert model.batches == [1]


def test_an_image_beyond_the_queue_bound_is_refused_at_once_with_res_003_and_a_retry_time() -> None:
    model = FakeModel(run_s=0.3)
    batcher = MicroBatcher(model, max_batch=1, max_delay_ms=0, max_queued=2)

    async def scenario() -> list[Detections | BaseException]:
        batcher.start()
        running = asyncio.ensure_future(batcher.detect(image(1), DetectParams(), 5))
        await asyncio.to_thread(model.running.wait, 2)  # the first image is in the model, not in the queue
        waiting = [asyncio.ensure_future(batcher.detect(image(v), DetectParams(), 5)) for v in (2, 3)]
        await asyncio.sleep(0)
        refused = asyncio.ensure_future(batcher.detect(image(4), DetectParams(), 5))
        results = await asyncio.gather(running, *waiting, refused, return_exceptions=True)
        await batcher.stop()
        return results

    *answered, refused = asyncio.run(scenario())

    assert all(isinstance(result, Detections) for result in answered)
    assert isinstance(refused, Overloaded) and (refused.code, refused.detail) == ("RES_003", "model-queue-full")
    assert refused.retry_after_s >= 1.0
    assert model.batches == [1, 1, 1]


def test_a_failing_batch_fails_its_own_requests_and_the_next_batch_runs() -> None:
    model = FakeModel(fail=True)
    batcher = MicroBatcher(model, max_batch=2, max_delay_ms=0)

    async def scenario() -> tuple[list, Detections]:
        batcher.start()
        failed = await asyncio.gather(batcher.detect(image(1), DetectParams(), 5),
                                      batcher.detect(image(2), DetectParams(), 5), return_exceptions=True)
        model.fail = False
        fine = await batcher.detect(image(3), DetectParams(), 5)
        await batcher.stop()
        return failed, fine

    failed, fine = asyncio.run(scenario())

    assert all(isinstance(e, RuntimeError) for e in failed)
    assert isinstance(fine, Detections)
