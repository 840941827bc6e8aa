"""Commit-after-acknowledgement without waiting for it: offsets are committed as acknowledgements arrive."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition


class DeliveryFailed(Exception):
    """The broker refused records of a batch; its offsets stay uncommitted, so the group will redo it."""


@dataclass
class PendingBatch:
    """One fetched batch's produced records, counted down as the broker acknowledges them."""

    outstanding: int = 0
    sealed: bool = False
    offsets: list[TopicPartition] = field(default_factory=list)
    errors: list[KafkaError] = field(default_factory=list)

    def expect(self) -> None:
        self.outstanding += 1

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        self.outstanding -= 1
        if error is not None:
            self.errors.append(error)

    @property
    def acknowledged(self) -> bool:
        return self.sealed and self.outstanding == 0


MAX_PENDING_BATCHES = 4


class AckedCommitter:
    """Commits each batch's offsets once the broker acknowledged every record produced from it.

    Invariant: offsets are committed in fetch order, and only for a prefix of batches whose records are all
    acknowledged; so a crash at any moment loses nothing and redoes only what was not yet committed. The
    worker never waits for acknowledgements while the model could be working, except when more than
    ``max_pending`` batches are unacknowledged (backpressure) and when it hands partitions back (``drain``).
    """

    def __init__(self, consumer: Consumer, producer: Producer, max_pending: int = MAX_PENDING_BATCHES) -> None:
        self._consumer = consumer
        self._producer = producer
        self._max_pending = max_pending
        self._pending: deque[PendingBatch] = deque()

    def begin(self) -> PendingBatch:
        batch = PendingBatch()
        self._pending.append(batch)
        return batch

    def seal(self, batch: PendingBatch, offsets: list[TopicPartition]) -> None:
        """Every record of ``batch`` is produced; commit ``offsets`` once they are all acknowledged."""
        batch.offsets, batch.sealed = offsets, True
        if len(self._pending) > self._max_pending:
            self._producer.flush(30)
        self.commit_acknowledged()

    def commit_acknowledged(self, wait: bool = False) -> None:
        """Serve delivery reports, then commit the acknowledged prefix (asynchronously unless ``wait``)."""
        self._producer.poll(0)
        offsets: dict[tuple[str, int], TopicPartition] = {}
        while self._pending and self._pending[0].acknowledged:
            batch = self._pending.popleft()
            if batch.errors:
                raise DeliveryFailed(f"{len(batch.errors)} records refused by the broker, e.g. {batch.errors[0]}")
            offsets.update({(tp.topic, tp.partition): tp for tp in batch.offsets})
        if offsets:
            self._consumer.commit(offsets=list(offsets.values()), asynchronous=not wait)

    def drain(self) -> None:
        """Wait for every acknowledgement and commit everything (before partitions are handed back)."""
        remaining = self._producer.flush(30)
        if remaining:
            raise DeliveryFailed(f"{remaining} records still unacknowledged after 30 s; not committing them")
        self.commit_acknowledged(wait=True)
