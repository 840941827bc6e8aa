"""confluent-kafka client configuration built from :class:`~foundation.settings.Settings`, plus topic admin helpers.

Every camcount Kafka client gets its config from here, so delivery guarantees and size limits are decided once.
Merge order (later wins): camcount defaults, the caller's ``overrides``, then ``settings.kafka.client_config``,
so an operator can always adjust a deployment (security, tuning) without a code change.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from foundation.errors import CamcountError, ConfigError, ServiceUnavailable
from foundation.settings import Settings

log = logging.getLogger(__name__)

ClientT = TypeVar("ClientT")

# Frames are JPEG/PNG payloads of up to settings.inference.max_frame_bytes (8 MB by default); clients keep
# librdkafka's 1 MB defaults unless raised, and the broker's own limit must be raised to match in production.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_FETCH_BYTES = 4 * MAX_MESSAGE_BYTES

# How long the broker may hold a fetch open waiting for data (librdkafka ``fetch.wait.max.ms``), per consumer role.
# Apache Kafka answers as soon as ``fetch.min.bytes`` (1) is there, so while data flows the wait costs no latency;
# on an idle topic each consumer sends about 1000/wait fetch requests per second per broker it reads from (50 ms:
# ~20/s), a load Kafka handles easily for a fleet of tens of consumers. librdkafka's 500 ms default is what made
# the local Tansu broker slow (a record produced while a consumer polled arrived after ~200 ms p50), and a short
# wait is not free there either: each consumer parked in a fetch costs Tansu CPU, measured 4 % of a core at 10 ms
# and 2 % at 50 ms, which on a small host comes out of the model's share. 2026-12-03, 2-core VM, worker at max
# batch 8 through the broker vs in-process, interleaved rounds: throughput ratio 0.909 at 10 ms, 0.945 at 25 ms,
# 0.959 at 50 ms; the hop to the worker took p50 1.8 ms at 10 ms and 4-5 ms at 50 ms (e2e p95 at half load 81-83
# and 83-95 ms). Operators can still override any of these in ``kafka.client_config``.
FETCH_WAIT_MS_LATENCY_CRITICAL = 50
"""Inference workers and readers of detections: every frame's latency includes this hop."""
FETCH_WAIT_MS_SINK = 50
"""The ClickHouse sink, which batches its inserts anyway (``max_interval_s``)."""
FETCH_WAIT_MS_COUNTING = 10
"""The Faust counting app (aiokafka ``fetch_max_wait_ms``; Faust itself would hard-code 1500 ms)."""
FETCH_QUEUE_BACKOFF_MS = 10
"""librdkafka ``fetch.queue.backoff.ms``: once a consumer's prefetch queue is over its bound
(``queued.max.messages.kbytes``, e.g. the worker's ``inference.prefetch_kbytes``), its next fetch waits this long.
librdkafka's 1000 ms default made a worker catching up on a backlog idle most of each second: it drained the queue
in a fraction of the pause and then waited (``camcount bench ceiling`` without JPEG decode on the 2-core dev VM:
740-870 -> 3700-6500 frames/s, see docs/performance.md). It must stay well under the time a worker takes to drain
its prefetch queue; the cost is one queue-size check per partition per period while the queue is full."""


class BrokerUnreachable(ServiceUnavailable):
    """No Kafka broker answered a Metadata request at the configured bootstrap address."""

    detail = "broker-unreachable"


class KafkaConfigError(ConfigError):
    """librdkafka refuses a client setting (an unknown property or a bad value), e.g. in kafka.client_config."""

    code = "CFG_004"
    detail = "invalid-kafka-client-config"


class TopicCreationError(CamcountError, RuntimeError):
    """The broker refused to create a topic for a reason other than it already existing."""

    code = "SYS_001"
    detail = "topic-creation-refused"


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Idempotent producer (no duplicates or reordering on retry) that accepts frames up to 16 MB.

    Keys of ``overrides`` are librdkafka names, e.g. ``producer_config(s, **{"transactional.id": "x"})``.
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": MAX_MESSAGE_BYTES,
    }
    return _merge(config, overrides, settings)


def consumer_config(settings: Settings, group_id: str, fetch_wait_ms: int = FETCH_WAIT_MS_LATENCY_CRITICAL,
                    **overrides: Any) -> dict[str, Any]:
    """Consumer-group member that commits explicitly, after processing (at-least-once), and reads big frames.

    ``fetch_wait_ms``: the role's ``fetch.wait.max.ms`` (see the ``FETCH_WAIT_MS_*`` constants).
    """
    session_timeout_ms = settings.kafka.session_timeout_ms
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "session.timeout.ms": session_timeout_ms,
        # librdkafka's 3 s default would exceed the 2-3 s session timeouts tests use.
        "heartbeat.interval.ms": max(100, session_timeout_ms // 3),
        "fetch.max.bytes": MAX_FETCH_BYTES,
        "max.partition.fetch.bytes": MAX_MESSAGE_BYTES,
        "fetch.wait.max.ms": fetch_wait_ms,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }
    return _merge(config, overrides, settings)


def base_config(settings: Settings) -> dict[str, Any]:
    """What every client shares: the bootstrap servers and ``kafka.client_config`` (security, tuning).

    Admin clients use it as it is; clients that are not librdkafka (the Faust counting app) translate it.
    """
    return _merge({"bootstrap.servers": settings.kafka_bootstrap()}, {}, settings)


def _merge(defaults: dict[str, Any], overrides: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    return {**defaults, **overrides, **settings.kafka.client_config}


def ensure_topics(admin: AdminClient, names_with_partitions: Mapping[str, int], timeout_s: float = 30.0) -> None:
    """Create each topic with its partition count unless it already exists (idempotent).

    An existing topic keeps its partition count; a mismatch is logged as a warning because partitions are
    never changed automatically (co-partitioned stream apps need matching counts: fix it deliberately).
    Raises :class:`TopicCreationError` for any other refusal.
    """
    if not names_with_partitions:
        return
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions) for name, partitions in names_with_partitions.items()],
        request_timeout=timeout_s,
    )
    for name, future in futures.items():
        try:
            future.result()
            log.info("created topic %s with %d partitions", name, names_with_partitions[name])
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicCreationError(
                    f"could not create topic {name!r} ({names_with_partitions[name]} partitions): {error.str()}; "
                    "check the broker log and that this client may create topics"
                ) from exc
    metadata = admin.list_topics(timeout=timeout_s)
    for name, wanted in names_with_partitions.items():
        topic = metadata.topics.get(name)
        actual = len(topic.partitions) if topic is not None else 0
        if actual != wanted:
            log.warning(
                "topic %s has %d partitions, wanted %d: delete and recreate it (loses its data) "
                "or set kafka.partitions=%d",
                name, actual, wanted, actual,
            )


def check_client_config(config: Mapping[str, Any]) -> None:
    """Raise :class:`KafkaConfigError` naming the property when librdkafka refuses ``config``; connects nowhere."""
    offline = {key: value for key, value in config.items() if key != "bootstrap.servers"}
    new_client(AdminClient, {**offline, "log_level": 0})  # no bootstrap servers: no connection, nothing logged


def new_client(factory: Callable[[dict[str, Any]], ClientT], config: Mapping[str, Any]) -> ClientT:
    """``factory(config)`` (Producer, Consumer, AdminClient); a setting librdkafka refuses raises
    :class:`KafkaConfigError` naming it."""
    try:
        return factory(dict(config))
    except KafkaException as exc:
        raise KafkaConfigError(
            f"invalid Kafka client setting: {exc.args[0].str()}; check kafka.client_config "
            "(CAMCOUNT_KAFKA__CLIENT_CONFIG)"
        ) from exc


def fetch_metadata(config: Mapping[str, Any], timeout_s: float) -> ClusterMetadata:
    """One Metadata request to the cluster at ``config["bootstrap.servers"]``; raises :class:`BrokerUnreachable`,
    or :class:`KafkaConfigError` when librdkafka refuses ``config`` (retrying cannot fix that).

    A plain TCP connect is tried first so that a broker that is not listening yet fails fast and quietly
    (librdkafka would log a connection error per attempt).
    """
    bootstrap = str(config["bootstrap.servers"])
    if not any(_tcp_accepts(address, timeout_s) for address in bootstrap.split(",")):
        raise BrokerUnreachable(f"nothing listening at {bootstrap}")
    admin = new_client(AdminClient, config)
    try:
        return admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerUnreachable(f"Metadata request to {bootstrap} failed: {exc.args[0]}") from exc


def wait_for_broker(
    bootstrap: str, timeout_s: float, client_config: Mapping[str, Any] | None = None
) -> ClusterMetadata:
    """Block until a Metadata request to ``bootstrap`` succeeds; ``client_config`` adds e.g. security settings.

    A ``client_config`` librdkafka refuses raises :class:`KafkaConfigError` at once, broker or not.
    """
    config = {**(client_config or {}), "bootstrap.servers": bootstrap}
    check_client_config(config)
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return fetch_metadata(config, timeout_s=max(0.1, min(remaining, 2.0)))
        except BrokerUnreachable:
            if remaining <= 0:
                raise BrokerUnreachable(
                    f"Kafka broker at {bootstrap} not reachable after {timeout_s:g}s: "
                    "start it with `camcount stack up` or set KAFKA_BOOTSTRAP_SERVERS"
                ) from None
            time.sleep(min(0.1, max(remaining, 0.0)))


def _tcp_accepts(address: str, timeout_s: float) -> bool:
    """``address`` is one bootstrap entry: ``host``, ``host:port`` or ``PROTOCOL://host:port``."""
    hostport = address.strip().rpartition("://")[2]
    if hostport.count(":") == 1 or hostport.startswith("["):
        host, _, port = hostport.rpartition(":")
    else:  # no port given (a bare host name or IPv6 address): Kafka's default
        host, port = hostport, "9092"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=min(timeout_s, 1.0)):
            return True
    except (OSError, ValueError):
        return False


def next_offsets(messages: Iterable[Message]) -> list[TopicPartition]:
    """The offsets to commit once ``messages`` are done: one past the highest offset per partition."""
    highest: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        highest[key] = max(highest.get(key, -1), m.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in sorted(highest.items())]
