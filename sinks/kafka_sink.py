"""Moves crossings, window counts, zone occupancy, the inference log and shadow pairs from Kafka into ClickHouse.

Commit protocol, per batch:
  1. decode the batch; set aside the records it cannot decode (see below);
  2. insert its rows into ClickHouse (idempotent tables, so a retried batch is harmless), retrying while ClickHouse
     is away: the sink's partitions are paused meanwhile, so the backlog waits in Kafka, and a circuit breaker
     (``ClickHouse``) spaces the attempts once it is clearly down;
  3. update the Redis live state, if configured (best effort, behind its own breaker: never the source of truth);
  4. commit the offsets just past the batch.
Invariant: an offset is committed only after its row is in ClickHouse (or its record on the dead-letter topic), so
a crash loses nothing and a replay only rewrites rows that are already there. Only an error that retrying cannot
fix (a query ClickHouse refuses, a broker that refuses dead letters) stops the sink.

A record the sink cannot decode (a schema version it does not know, e.g. a producer upgraded before the sink,
or a corrupt payload) is never skipped silently. By default (``kafka.bad_records: dead-letter``) it is set aside
on the records dead-letter topic, with its code, reason and source offset and its original key, value and
headers, and the flow goes on; the batch is committed only after the broker acknowledged the dead letters, so
nothing is lost (``camcount_sink_dead_records_total`` counts them). With ``kafka.bad_records: stop`` the sink
stops with :class:`UnreadableRecord` before its batch is written or committed, as Kafka Connect does with
``errors.tolerance=none``; restarted, it stops at the same record until it is upgraded, or until an operator
deliberately moves the group past it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer
from prometheus_client import CollectorRegistry, Counter, Gauge

from foundation.clickhouse import ClickHouseUnavailable, clickhouse_client, is_unavailable, redact_url
from foundation.errors import CamcountError
from foundation.kafka import FETCH_WAIT_MS_SINK, consumer_config, next_offsets, producer_config, wait_for_broker
from foundation.resilience import BreakerMetrics, CircuitOpen, backoff, circuit_breaker
from foundation.settings import Settings
from foundation.topics import CROSSINGS
from schemas import SchemaError, UndecodablePayload, UnknownSchemaVersion, headers_dict
from schemas.dead_letters import dead_letter_headers
from sinks.clickhouse import SINK_TABLES, ClickHouseWriter, SinkTable
from sinks.redis_live import LiveCrossingTotals

log = logging.getLogger(__name__)

LIVE_BACKLOG = 100_000
"""Crossings held back for the Redis live totals while Redis is away (the oldest go first beyond this)."""


class UnreadableRecord(CamcountError, RuntimeError):
    """A consumed record cannot be decoded; the sink stopped without writing or committing its batch."""

    code = "SINK_001"
    detail = "stopped-at-unreadable-record"


class DeadLettersNotDelivered(CamcountError):
    """The broker did not acknowledge records set aside on the dead-letter topic; their batch is not committed."""

    code = "SINK_002"
    detail = "dead-letters-not-delivered"


class ClickHouseSink:
    def __init__(
        self,
        settings: Settings,
        group_id: str | None = None,
        max_rows: int = 5000,
        max_interval_s: float = 1.0,
        live_totals: LiveCrossingTotals | None = None,
        registry: CollectorRegistry | None = None,
        breakers: BreakerMetrics | None = None,
    ) -> None:
        """``group_id``: the consumer group (default ``clickhouse.sink_group_id``); ``registry``: where the sink's
        metrics go (a new one when not given), shared with the process's other parts; ``breakers``: that registry's
        breaker gauge, when another part already created it."""
        self.settings = settings
        self.group_id = group_id or settings.clickhouse.sink_group_id
        self.max_rows = max_rows
        self.max_interval_s = max_interval_s
        self.live_totals = live_totals
        self.rows_written = 0
        self.dead_letters = 0
        self.metrics_registry = registry or CollectorRegistry()
        self._dead_records = Counter("camcount_sink_dead_records", "Records the sink set aside, undecodable",
                                     ("topic", "code", "detail"), registry=self.metrics_registry)
        self.up = Gauge("camcount_sink_up", "1 while the ClickHouse sink runs, 0 once it stopped on an error",
                        registry=self.metrics_registry)
        breakers = breakers or BreakerMetrics(self.metrics_registry)
        self._breaker = circuit_breaker("clickhouse", settings.resilience, breakers,
                                        exclude=(lambda exc: not isinstance(exc, ClickHouseUnavailable),))
        self._redis_breaker = circuit_breaker("redis-live-totals", settings.resilience, breakers)
        self._held: list[Message] = []
        self._live_backlog: deque[dict] = deque(maxlen=LIVE_BACKLOG)
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._tables: dict[str, SinkTable] = {table.stream.topic(settings.kafka): table for table in SINK_TABLES}

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> None:
        wait_for_broker(self.settings.kafka_bootstrap(), timeout_s=15, client_config=self.settings.kafka.client_config)
        writer = ClickHouseWriter(clickhouse_client(self.settings))
        consumer = Consumer(consumer_config(self.settings, self.group_id, fetch_wait_ms=FETCH_WAIT_MS_SINK))
        self._producer = Producer(producer_config(self.settings))
        consumer.subscribe(list(self._tables))
        self.up.set(1)
        batch: list[Message] = []
        started = time.monotonic()
        try:
            while not self._stop.is_set():
                batch.extend(self._consume(consumer, 500, timeout_s=0.2))
                if batch and (len(batch) >= self.max_rows or time.monotonic() - started >= self.max_interval_s):
                    if not self._store(consumer, writer, batch):
                        return  # stopped while ClickHouse was away: nothing committed, the group redoes the batch
                    consumer.commit(offsets=next_offsets(batch), asynchronous=False)
                    batch, started = self._held, time.monotonic()
                    self._held = []
                elif not batch:
                    now = time.monotonic()
                    if self._live_backlog and now - started >= self.max_interval_s:
                        # Idle, with crossings held back while Redis was away: retry them now, or a camera that
                        # went quiet (a replayed file, a camera switched off) would never see its totals converge.
                        self._update_live_totals([])
                    if not self._live_backlog or now - started >= self.max_interval_s:
                        started = now
            if batch and self._store(consumer, writer, batch):
                consumer.commit(offsets=next_offsets(batch), asynchronous=False)
        except BaseException:
            self.up.set(0)
            raise
        finally:
            consumer.close()
            writer.close()

    def _consume(self, consumer: Consumer, count: int, timeout_s: float) -> list[Message]:
        messages = []
        for message in consumer.consume(count, timeout=timeout_s):
            if message.error() is None:
                messages.append(message)
            elif message.error().fatal():
                raise KafkaException(message.error())
            elif message.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", message.error())
        return messages

    def _store(self, consumer: Consumer, writer: ClickHouseWriter, batch: list[Message]) -> bool:
        """Steps 1-3 for ``batch``; False if the sink was stopped while ClickHouse was still away."""
        rows, crossings = self._decode(batch)
        paused: list = []

        def wait_polling(seconds: float) -> None:
            """Sleep between attempts while staying in the group; partitions paused, so nothing new arrives
            (a record that still does, e.g. from a partition assigned meanwhile, is held for the next batch)."""
            if not paused:
                paused.extend(consumer.assignment())
                consumer.pause(paused)
            deadline = time.monotonic() + seconds
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._held.extend(self._consume(consumer, 100, timeout_s=min(0.2, max(deadline - time.monotonic(),
                                                                                       0.0))))

        try:
            for attempt in backoff(self.settings.resilience, (ClickHouseUnavailable, CircuitOpen), self._stop,
                                   sleep=wait_polling,
                                   what=f"ClickHouse insert of {len(batch)} records"):
                with attempt:
                    self._breaker.call(self._insert, writer, rows)
        except (ClickHouseUnavailable, CircuitOpen):
            if self._stop.is_set():
                return False
            raise
        finally:
            if paused:
                consumer.resume(paused)
        self._update_live_totals(crossings)
        self.rows_written += sum(len(table_rows) for table_rows in rows.values())
        return True

    def _decode(self, batch: list[Message]) -> tuple[dict[str, list[tuple]], list[dict]]:
        """The batch's rows per topic, and its crossing records (for the live totals); a record that cannot be
        decoded, or whose fields do not fit its table (a timestamp past year 9999, say), is set aside."""
        rows: dict[str, list[tuple]] = {topic: [] for topic in self._tables}
        crossings: list[dict] = []
        crossings_topic = CROSSINGS.topic(self.settings.kafka)
        set_aside = []
        for message in batch:
            table = self._tables[message.topic()]
            try:
                record = table.codec.decode(message.value(), headers_dict(message.headers()))
                try:
                    row = table.row(record)
                except (ValueError, OverflowError, OSError) as exc:
                    raise UndecodablePayload(f"a field of this {table.codec.name} record does not fit table "
                                             f"{table.table}: {exc}") from exc
            except SchemaError as exc:
                if self.settings.kafka.bad_records == "stop":
                    raise UnreadableRecord(_unreadable(message, self.group_id, exc)) from exc
                set_aside.append((message, exc))
                continue
            if row is not None:
                rows[message.topic()].append(row)
            if message.topic() == crossings_topic:
                crossings.append(record)
        if set_aside:
            self._set_aside(set_aside)
        return rows, crossings

    def _insert(self, writer: ClickHouseWriter, rows: dict[str, list[tuple]]) -> None:
        try:
            for topic, table in self._tables.items():
                writer.insert(table.table, table.columns, rows[topic])
        except Exception as exc:
            if is_unavailable(exc):
                raise ClickHouseUnavailable(f"ClickHouse at {redact_url(self.settings.clickhouse_url())} is "
                                            f"unavailable: {' '.join(str(exc).split())[:300]}") from exc
            raise

    def _update_live_totals(self, crossings: list[dict]) -> None:
        """Add the batch's crossings, and any held back while Redis was away, to the live totals.

        Adding is idempotent per event id, so the backlog is simply retried with each batch, and every
        ``max_interval_s`` while no record arrives, until Redis answers;
        it holds the latest ``LIVE_BACKLOG`` crossings (live totals are a convenience: ClickHouse has them all).
        """
        if self.live_totals is None:
            return
        self._live_backlog.extend(crossings)
        if not self._live_backlog:
            return
        try:
            self._redis_breaker.call(self.live_totals.add, list(self._live_backlog))
        except CircuitOpen:
            return  # Redis is known to be away: skip at once instead of waiting out its timeout per batch
        except Exception as exc:  # live state is a convenience; ClickHouse already holds the truth
            log.warning("live totals not updated, %d crossings held back: %s", len(self._live_backlog), exc)
            return
        self._live_backlog.clear()

    def _set_aside(self, bad: list[tuple[Message, SchemaError]]) -> None:
        """Produce each record to the dead-letter topic and wait for the broker's acknowledgement of all of them."""
        assert self._producer is not None
        topic = self.settings.kafka.records_dead_letter_topic
        failures: list[str] = []

        def delivered(error: KafkaError | None, _: Message) -> None:
            if error is not None:
                failures.append(error.str())

        for message, exc in bad:
            log.warning("setting aside %s/%d/%d on %s: %s", message.topic(), message.partition(), message.offset(),
                        topic, exc)
            self._producer.produce(topic, message.value(), message.key(), on_delivery=delivered, headers=(
                dead_letter_headers(message.headers(), "sink", exc.code, exc.detail, str(exc), message.topic(),
                                    message.partition(), message.offset())))
        remaining = self._producer.flush(30)
        if failures or remaining:
            raise DeadLettersNotDelivered(
                f"{len(failures) + remaining} dead letter(s) for {topic} not acknowledged ({'; '.join(failures)}); "
                "their batch was not committed and is read again after a restart", remedy="check the broker")
        for message, exc in bad:
            self._dead_records.labels(message.topic(), exc.code, exc.detail).inc()
        self.dead_letters += len(bad)


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
