"""The worker's rebalance callbacks and its stop flag, driven directly (no broker): partitions lost to the group
leave no lag gauge and no offset to commit behind, and a stop request ends a wait for room in a full producer queue.

librdkafka calls ``_on_lost`` only after a session timeout, which cannot be provoked on demand here, so these
tests call the callbacks as librdkafka would, with a small fake consumer that answers positions and watermarks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from confluent_kafka import Producer, TopicPartition

from foundation.settings import Settings
from stream_apps.inference.commits import AckedCommitter, PendingBatch
from stream_apps.inference.routing import RouteTable
from stream_apps.inference.worker import InferenceWorker, StoppedWhileQueueFull
from tests.services import free_ports

TOPIC = "frames"


class ConsumerAt:
    """Answers as a consumer positioned at offset 5 of every partition, whose high watermark is 12; records the
    offsets it is asked to commit."""

    def __init__(self) -> None:
        self.commits: list[list[tuple[int, int]]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append([(tp.partition, tp.offset) for tp in offsets])

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(p.topic, p.partition, 5) for p in partitions]

    def get_watermark_offsets(self, _partition: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, 12


@pytest.fixture
def worker() -> Iterator[InferenceWorker]:
    worker = InferenceWorker(Settings(), RouteTable(SimpleNamespace(name="m", version="1.0.0")))
    yield worker
    worker.stop()


def _lag(worker: InferenceWorker, partition: int) -> float | None:
    return worker.metrics.registry.get_sample_value("camcount_consumer_lag",
                                                     {"topic": TOPIC, "partition": str(partition)})


def test_lost_partitions_lose_their_lag_gauges_like_revoked_ones(worker):
    consumer = ConsumerAt()
    partitions = [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)]
    worker._consumer = consumer
    worker._on_assign(consumer, partitions)
    worker._refresh_lag()
    assert _lag(worker, 0) == 7
    worker._on_lost(consumer, partitions[:1])
    assert _lag(worker, 0) is None and _lag(worker, 1) == 7


def test_offsets_pending_for_lost_partitions_are_never_committed(worker):
    consumer = ConsumerAt()
    worker._committer = AckedCommitter(consumer, Producer({"bootstrap.servers": f"127.0.0.1:{free_ports(1)[0]}",
                                                           "log_level": 0}))
    batch = worker._committer.begin()
    batch.expect()  # one record produced, not yet acknowledged
    worker._committer.seal(batch, [TopicPartition(TOPIC, 0, 40), TopicPartition(TOPIC, 1, 60)])
    worker._on_lost(consumer, [TopicPartition(TOPIC, 0)])
    batch.on_delivery(None, None)
    worker._committer.drain()
    assert consumer.commits == [[(1, 60)]]


def test_a_stop_request_ends_the_wait_for_room_in_a_full_producer_queue(worker):
    # Nothing listens on the port and the queue holds one record: the second produce finds it full, as in an outage.
    worker._producer = Producer({"bootstrap.servers": f"127.0.0.1:{free_ports(1)[0]}",
                                 "queue.buffering.max.messages": 1, "log_level": 0})
    worker._batch = PendingBatch()
    worker._produce("detections", b"cam", b"first", [])
    outcome: list[Exception | None] = []

    def produce_second() -> None:
        try:
            worker._produce("detections", b"cam", b"second", [])
            outcome.append(None)
        except Exception as exc:  # handed to the test's thread
            outcome.append(exc)

    waiting = threading.Thread(target=produce_second, daemon=True)
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive(), "the queue should be full, so the produce waits"
    worker.stop()
    waiting.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], StoppedWhileQueueFull)
    assert worker._batch.outstanding == 1  # the record that was not sent is not counted as produced
