"""The API's dynamic micro-batcher: concurrent requests for one model version share model runs.

Policy (the stream workers' knobs, ``api.max_batch`` and ``api.max_delay_ms``): requests queue as they arrive; a
batch starts when ``max_batch`` images are waiting, or when ``max_delay_ms`` have passed since the first of them was
queued, whichever comes first. While a batch runs the next one gathers, so under load batches fill up by themselves
(the first image of a gathering batch has long waited its delay when the model becomes free) and the model is never
idle while requests wait; at low load an image waits at most ``max_delay_ms`` for company.

A bounded queue (``max_queued``) refuses an image at once with RES_003 once that many wait, rather than letting
it wait past any client's patience: back-pressure a load balancer can act on.

Invariants: one model run at a time per batcher, on its own thread, so the event loop stays free for HTTP while the
model computes; every queued image is answered exactly once, through its own future (a result, or the exception of
its batch); an image whose caller stopped waiting (timeout, disconnect) before its batch started is not run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from api.errors import Overloaded, RequestTimeout
from models.detections import Detections
from models.detector import DetectParams

log = logging.getLogger(__name__)

RunBatch = Callable[[Sequence[np.ndarray], Sequence[DetectParams]], list[Detections]]
"""Runs a batch of BGR images with each one's parameters, one Detections per image (``Detector.detect_each``)."""


@dataclass
class _Job:
    image: np.ndarray
    params: DetectParams
    future: asyncio.Future[Detections]
    queued: float = field(default_factory=time.perf_counter)


@dataclass(frozen=True)
class BatchRun:
    """What one model run did, for metrics: how many images, how long it took, and how long its first image
    waited in the queue."""

    size: int
    run_s: float
    oldest_wait_s: float


class MicroBatcher:
    """Queues single images for one model version and runs them in batches (see the module docstring)."""

    def __init__(self, run_batch: RunBatch, max_batch: int, max_delay_ms: float, name: str = "model",
                 on_batch: Callable[[BatchRun], None] | None = None, max_queued: int | None = None) -> None:
        """``max_queued``: images that may wait at once; one more is refused with Overloaded (RES_003)."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run_batch = run_batch
        self.max_batch = max_batch
        self.max_delay_s = max_delay_ms / 1000
        self.name = name
        self._on_batch = on_batch
        self.max_queued = max_queued
        self._last_run_s = 0.0
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{name}")
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Images waiting for a batch."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the batching loop on the running event loop (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        """Stop batching: images still queued are answered with an error, the running batch finishes first."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RequestTimeout(f"{self.name} was unloaded before this image ran",
                                                        remedy="send the request again"))
        self._executor.shutdown(wait=False)

    async def detect(self, image: np.ndarray, params: DetectParams, timeout_s: float) -> Detections:
        """Detections of one BGR image, run in the next batch; RequestTimeout (INF_004) after ``timeout_s``."""
        if self._task is None:
            raise RuntimeError(f"batcher {self.name} is not started")
        if self.max_queued is not None and self.queued >= self.max_queued:
            batches_ahead = self.queued / self.max_batch + 1
            raise Overloaded(f"{self.name} has {self.queued} images queued (api.max_queued_images)",
                             retry_after_s=max(1.0, batches_ahead * self._last_run_s))
        future: asyncio.Future[Detections] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Job(image, params, future))
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise RequestTimeout(
                f"{self.name} did not answer within {timeout_s:g} s ({self.queued} images queued)",
                remedy="retry later, send fewer images at once, or raise api.request_timeout_s") from None

    async def _gather(self) -> list[_Job]:
        """The next batch: the first waiting image, then whatever else arrives before the batch is full or the
        first image's delay is over."""
        first = await self._queue.get()
        batch = [first]
        deadline = first.queued + self.max_delay_s
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [job for job in batch if not job.future.done()]  # callers that gave up are not run

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._gather()
            if not batch:
                continue
            started = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, self._run_batch, [job.image for job in batch], [job.params for job in batch])
            except asyncio.CancelledError:
                for job in batch:
                    if not job.future.done():
                        job.future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the batch's callers get it; the loop goes on
                log.warning("%s failed on a batch of %d: %s", self.name, len(batch), exc)
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            finished = time.perf_counter()
            self._last_run_s = finished - started
            for job, result in zip(batch, results, strict=True):
                if not job.future.done():
                    job.future.set_result(result)
            if self._on_batch is not None:
                self._on_batch(BatchRun(len(batch), finished - started, started - batch[0].queued))
