"""The Faust counting app's Kafka client: options translated from the config every camcount client shares, and a
transport whose consumer does not park fetches for 1.5 s.

Faust talks to Kafka through aiokafka, whose options are not librdkafka's: this adapter maps the bootstrap
servers, ``client.id`` and the security properties (``security.protocol``, ``sasl.*``, ``ssl.*``) set in
``kafka.client_config``, so a SASL/TLS cluster configured once reaches the counting app's consumer and producer
too. Properties with no aiokafka counterpart here (librdkafka tuning) are named once in the log as not applied.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change it; on a broker that
holds fetches open (the local stack's) every detection would wait that long before it is counted.
:class:`CountingFaustApp` uses a transport whose consumer takes ``FETCH_WAIT_MS_COUNTING`` instead.

It also closes a window in which faust-streaming 0.15 drops records at start-up and after every rebalance
(found by the fault suite: about one start in four lost a run of a camera's waiting records). When table recovery
ends, Faust resumes the stream partitions while the flow is already running, seeks them to their committed offsets,
then empties every stream queue; records fetched before the seek are thrown away. The seek brings them back only
where an offset above 0 is committed, because aiokafka's ``seek_to_committed`` leaves any other partition at the
position its last fetch reached. Two changes keep every record:

1. the flow is stopped before the stream partitions are resumed (:class:`_Recovery`), so nothing fetched before
   the seek reaches a stream (a fetch in flight is discarded and sought back by Faust itself);
2. a partition without a committed offset is sought to where ``auto_offset_reset`` says a new group starts
   (:meth:`_ConsumerThread.seek_to_committed`), so "seek back" is true for every partition.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers import aiokafka as faust_aiokafka

from foundation.kafka import FETCH_WAIT_MS_COUNTING, KafkaConfigError

log = logging.getLogger(__name__)

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI")
_TRANSLATED = {
    "bootstrap.servers", "client.id", "security.protocol", "sasl.mechanism", "sasl.mechanisms", "sasl.username",
    "sasl.password", "sasl.kerberos.service.name", "ssl.ca.location", "ssl.certificate.location",
    "ssl.key.location", "ssl.key.password", "ssl.endpoint.identification.algorithm",
}


def faust_broker_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``faust.App`` keyword arguments (``broker``, ``broker_credentials``, ``broker_client_id``) for ``config``,
    a librdkafka client config such as :func:`foundation.kafka.base_config` returns."""
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{host.strip()}" for host in str(config["bootstrap.servers"]).split(",")),
    }
    if "client.id" in config:
        options["broker_client_id"] = str(config["client.id"])
    credentials = _credentials(config)
    if credentials is not None:
        options["broker_credentials"] = credentials
    ignored = sorted(set(config) - _TRANSLATED)
    if ignored:
        log.info("Kafka client settings not applied to the Faust app (librdkafka only): %s", ", ".join(ignored))
    return options


def _credentials(config: Mapping[str, Any]) -> faust.types.auth.CredentialsT | None:
    protocol = str(config.get("security.protocol", "PLAINTEXT")).upper()
    if protocol not in _PROTOCOLS:
        raise KafkaConfigError(f"security.protocol={config['security.protocol']!r} in kafka.client_config: "
                               f"use one of {', '.join(_PROTOCOLS)}")
    context = _ssl_context(config) if protocol.endswith("SSL") else None
    if not protocol.startswith("SASL"):
        return faust.SSLCredentials(context) if context is not None else None
    mechanism = str(config.get("sasl.mechanism", config.get("sasl.mechanisms", "GSSAPI"))).upper()
    if mechanism not in _SASL_MECHANISMS:
        raise KafkaConfigError(f"sasl.mechanism={mechanism!r} in kafka.client_config is not supported by the "
                               f"counting app: use one of {', '.join(_SASL_MECHANISMS)}")
    if mechanism == "GSSAPI":
        return faust.GSSAPICredentials(
            kerberos_service_name=str(config.get("sasl.kerberos.service.name", "kafka")), ssl_context=context)
    return faust.SASLCredentials(username=config.get("sasl.username"), password=config.get("sasl.password"),
                                 mechanism=mechanism, ssl_context=context)


def _ssl_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=config.get("ssl.ca.location"))
        if "ssl.certificate.location" in config:
            context.load_cert_chain(config["ssl.certificate.location"], config.get("ssl.key.location"),
                                    config.get("ssl.key.password"))
    except (OSError, ssl.SSLError) as exc:
        raise KafkaConfigError(f"the TLS files named in kafka.client_config (ssl.*) cannot be loaded: {exc}") from exc
    if str(config.get("ssl.endpoint.identification.algorithm", "https")).lower() == "none":
        context.check_hostname = False
    return context


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: faust_aiokafka.Transport) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher, so setting it before start is enough.
        consumer._fetch_max_wait_ms = FETCH_WAIT_MS_COUNTING
        return consumer

    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Seek every assigned partition to its committed offset, or to where a new group starts if none is."""
        return await self.call_thread(self._seek_to_committed_or_reset)

    async def _seek_to_committed_or_reset(self) -> Mapping[TopicPartition, int]:
        consumer = self._ensure_consumer()
        committed = await consumer.seek_to_committed()
        unsought = [tp for tp, offset in committed.items() if not offset]  # None, or 0: aiokafka did not seek
        if unsought:
            if self.app.conf.consumer_auto_offset_reset == "latest":
                await consumer.seek_to_end(*unsought)
            else:
                await consumer.seek_to_beginning(*unsought)
        return committed


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class _Recovery(Recovery):
    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        # Faust resumes the flow itself once the stream partitions are sought back (see the module docstring).
        self.app.consumer.stop_flow()
        self.app.flow_control.suspend()
        await super().on_recovery_completed(generation_id)


class _TableManager(TableManager):
    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _Recovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class CountingFaustApp(faust.App):
    """``faust.App`` whose consumer waits at most ``FETCH_WAIT_MS_COUNTING`` per fetch and keeps every record
    across start-up and rebalances (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, TableManager=_TableManager, **kwargs)

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)

