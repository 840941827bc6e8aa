"""The AckedCommitter commits a batch's offsets only after every record of it, and of every batch before it, was
acknowledged; after a delivery failure it never commits again; offsets of lost partitions are never committed.

The consumer and producer are small fakes: they record commits, and the tests deliver acknowledgements by hand.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, TopicPartition

from stream_apps.inference.commits import AckedCommitter, DeliveryFailed, PendingBatch

TOPIC = "frames"


class RecordingConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[int, int]] = []

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> None:
        self.commits.append({tp.partition: tp.offset for tp in offsets})


class AcknowledgedProducer:
    """Every record was acknowledged before ``flush`` or ``poll`` is called (the tests deliver them by hand)."""

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def _produced(committer: AckedCommitter, partition: int, next_offset: int,
              error: KafkaError | None = None) -> PendingBatch:
    """A batch of one record, acknowledged (refused when ``error``), and sealed with the offset after it."""
    batch = committer.begin()
    batch.expect()
    batch.on_delivery(error, None)
    batch.offsets, batch.sealed = [TopicPartition(TOPIC, partition, next_offset)], True
    return batch


REFUSED = KafkaError(KafkaError._MSG_TIMED_OUT)


@pytest.fixture
def consumer() -> RecordingConsumer:
    return RecordingConsumer()


@pytest.fixture
def committer(consumer: RecordingConsumer) -> AckedCommitter:
    return AckedCommitter(consumer, AcknowledgedProducer())


def test_acknowledged_batches_are_committed_up_to_the_last_one(committer, consumer):
    _produced(committer, 0, 10)
    _produced(committer, 0, 20)
    committer.commit_acknowledged()
    assert consumer.commits == [{0: 20}]


def test_acknowledged_batches_before_a_failed_one_are_committed_and_the_failure_raised(committer, consumer):
    _produced(committer, 0, 10)
    _produced(committer, 0, 20, REFUSED)
    _produced(committer, 0, 30)
    with pytest.raises(DeliveryFailed):
        committer.commit_acknowledged()
    assert consumer.commits == [{0: 10}]


def test_no_offset_beyond_a_failed_batch_is_committed_by_later_calls(committer, consumer):
    _produced(committer, 0, 10, REFUSED)
    _produced(committer, 0, 20)
    with pytest.raises(DeliveryFailed):
        committer.commit_acknowledged()
    _produced(committer, 0, 30)
    with pytest.raises(DeliveryFailed):
        committer.commit_acknowledged()
    assert consumer.commits == []


def test_drain_commits_nothing_after_a_delivery_failure(committer, consumer):
    _produced(committer, 0, 10, REFUSED)
    _produced(committer, 1, 20)
    with pytest.raises(DeliveryFailed):
        committer.commit_acknowledged()
    committer.drain()  # as when the worker's consumer closes and its partitions are revoked
    assert consumer.commits == []


def test_pending_offsets_of_lost_partitions_are_never_committed(committer, consumer):
    batch = committer.begin()
    batch.expect()
    batch.offsets, batch.sealed = [TopicPartition(TOPIC, 0, 10), TopicPartition(TOPIC, 1, 15)], True
    committer.discard([TopicPartition(TOPIC, 0)])
    batch.on_delivery(None, None)
    committer.drain()
    assert consumer.commits == [{1: 15}]
