"""Commit-after-acknowledgement without waiting for it: offsets are committed as acknowledgements arrive."""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from foundation.errors import CamcountError

log = logging.getLogger(__name__)


class DeliveryFailed(CamcountError):
    """The broker refused records of a batch; its offsets stay uncommitted, so the group will redo it."""

    code = "SYS_004"
    detail = "delivery-failed"


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

    Invariants: offsets are committed in fetch order, and only for a prefix of batches whose records are all
    acknowledged; so a crash at any moment loses nothing and redoes only what was not yet committed. Once a
    batch failed delivery, nothing is ever committed again, so no offset at or beyond it moves; the worker
    stops and the group redelivers from the last good commit.
    Offsets of partitions lost to the group are forgotten (``discard``), never committed under a new generation.
    The worker never waits for acknowledgements while the model could be working, except when more than
    ``max_pending`` batches are unacknowledged (backpressure) and when it hands partitions back (``drain``).
    """

    def __init__(self, consumer: Consumer, producer: Producer, max_pending: int = MAX_PENDING_BATCHES) -> None:
        self._consumer = consumer
        self._producer = producer
        self._max_pending = max_pending
        self._pending: deque[PendingBatch] = deque()
        self._failure: str | None = None
        """Why a batch failed delivery, once one did; from then on nothing is committed."""

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
        """Serve delivery reports, then commit the acknowledged prefix (asynchronously unless ``wait``).

        Raises DeliveryFailed when the prefix reaches a batch with refused records, and on every call after that.
        """
        self._producer.poll(0)
        if self._failure is not None:
            raise DeliveryFailed(self._failure)
        offsets: dict[tuple[str, int], TopicPartition] = {}
        while self._pending and self._pending[0].acknowledged:
            batch = self._pending[0]
            if batch.errors:
                self._failure = (f"{len(batch.errors)} records refused by the broker, e.g. {batch.errors[0]}; "
                                 f"nothing from that batch on is committed")
                break
            self._pending.popleft()
            offsets.update({(tp.topic, tp.partition): tp for tp in batch.offsets})
        if offsets:  # the good prefix before a failed batch is still worth keeping
            self._consumer.commit(offsets=list(offsets.values()), asynchronous=not wait)
        if self._failure is not None:
            raise DeliveryFailed(self._failure)

    def discard(self, partitions: list[TopicPartition]) -> None:
        """Forget the pending offsets of ``partitions``: they were lost to the group, whose new owner may have
        committed beyond them already, so committing them now could move its offsets backwards."""
        lost = {(p.topic, p.partition) for p in partitions}
        for batch in self._pending:
            batch.offsets = [tp for tp in batch.offsets if (tp.topic, tp.partition) not in lost]

    def drain(self) -> None:
        """Wait for every acknowledgement and commit everything (before partitions are handed back).

        After a delivery failure (already raised by the call that found it) it returns at once, committing nothing.
        """
        if self._failure is not None:
            log.warning("not committing on drain: %s", self._failure)
            return
        remaining = self._producer.flush(30)
        if remaining:
            raise DeliveryFailed(f"{remaining} records still unacknowledged after 30 s; not committing them")
        self.commit_acknowledged(wait=True)
