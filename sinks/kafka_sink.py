"""Moves crossings, window counts, zone occupancy, the inference log and shadow pairs from Kafka into ClickHouse.

Commit protocol, per batch:
  1. insert the batch's rows into ClickHouse (idempotent tables, so a retried batch is harmless);
  2. update the Redis live state, if configured (best effort: never the source of truth);
  3. commit the offsets just past the batch.
Invariant: an offset is committed only after its row is in ClickHouse, so a crash loses nothing and a replay
only rewrites rows that are already there.

A record the sink cannot decode (a schema version it does not know, e.g. a producer upgraded before the sink,
or a corrupt payload) stops the sink with :class:`UnreadableRecord` before its batch is written or committed,
as Kafka Connect does by default (``errors.tolerance=none``): it is never skipped silently. Restarted, the sink
stops at the same record until it is upgraded, or until an operator deliberately moves the group past it.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from foundation.clickhouse import clickhouse_client
from foundation.errors import CamcountError
from foundation.kafka import FETCH_WAIT_MS_SINK, consumer_config, next_offsets, wait_for_broker
from foundation.settings import Settings
from foundation.topics import CROSSINGS
from schemas import SchemaError, UnknownSchemaVersion, headers_dict
from sinks.clickhouse import SINK_TABLES, ClickHouseWriter, SinkTable
from sinks.redis_live import LiveCrossingTotals

log = logging.getLogger(__name__)


class UnreadableRecord(CamcountError, RuntimeError):
    """A consumed record cannot be decoded; the sink stopped without writing or committing its batch."""

    code = "SINK_001"


class ClickHouseSink:
    def __init__(
        self,
        settings: Settings,
        group_id: str = "camcount-sink-clickhouse",
        max_rows: int = 5000,
        max_interval_s: float = 1.0,
        live_totals: LiveCrossingTotals | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.max_rows = max_rows
        self.max_interval_s = max_interval_s
        self.live_totals = live_totals
        self.rows_written = 0
        self._stop = threading.Event()
        self._tables: dict[str, SinkTable] = {table.stream.topic(settings.kafka): table for table in SINK_TABLES}

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> None:
        wait_for_broker(self.settings.kafka_bootstrap(), timeout_s=15, client_config=self.settings.kafka.client_config)
        writer = ClickHouseWriter(clickhouse_client(self.settings))
        consumer = Consumer(consumer_config(self.settings, self.group_id, fetch_wait_ms=FETCH_WAIT_MS_SINK))
        consumer.subscribe(list(self._tables))
        batch: list[Message] = []
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                for message in consumer.consume(500, timeout=0.2):
                    if message.error() is None:
                        batch.append(message)
                    elif message.error().fatal():
                        raise KafkaException(message.error())
                    elif message.error().code() != KafkaError._PARTITION_EOF:
                        log.warning("consumer error: %s", message.error())
                if batch and (len(batch) >= self.max_rows or time.monotonic() - started >= self.max_interval_s):
                    self._write(writer, batch)
                    consumer.commit(offsets=next_offsets(batch), asynchronous=False)
                    batch, started = [], time.monotonic()
                elif not batch:
                    started = time.monotonic()
            if batch:
                self._write(writer, batch)
                consumer.commit(offsets=next_offsets(batch), asynchronous=False)
        finally:
            consumer.close()
            writer.close()

    def _write(self, writer: ClickHouseWriter, batch: list[Message]) -> None:
        records: dict[str, list[dict]] = {topic: [] for topic in self._tables}
        for message in batch:
            try:
                records[message.topic()].append(
                    self._tables[message.topic()].codec.decode(message.value(), headers_dict(message.headers())))
            except SchemaError as exc:
                raise UnreadableRecord(_unreadable(message, self.group_id, exc)) from exc
        for topic, table in self._tables.items():
            writer.insert(table.table, table.columns, [table.row(record) for record in records[topic]])
        if self.live_totals is not None:
            try:
                self.live_totals.add(records[CROSSINGS.topic(self.settings.kafka)])
            except Exception:  # live state is a convenience; ClickHouse already holds the truth
                log.exception("live state update failed; continuing")
        self.rows_written += sum(len(rows) for rows in records.values())


def _unreadable(message: Message, group_id: str, exc: SchemaError) -> str:
    """What stopped the sink, and what the operator can do about it."""
    where = f"{message.topic()}/{message.partition()}/{message.offset()}"
    if isinstance(exc, UnknownSchemaVersion):
        remedy = "upgrade the sink to a version that reads it (upgrade consumers before producers) and restart it"
    else:
        remedy = (f"if the record is corrupt, move the group past it deliberately: kafka-consumer-groups "
                  f"--group {group_id} --topic {message.topic()}:{message.partition()} --reset-offsets "
                  f"--to-offset {message.offset() + 1} --execute (with the sink stopped)")
    return f"sink stopped at {where}, which it cannot decode ({exc}); nothing was committed past it: {remedy}"
