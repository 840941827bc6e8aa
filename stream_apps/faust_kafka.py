"""The Faust counting app's Kafka client: options translated from the config every camcount client shares, and a
transport whose consumer does not park fetches for 1.5 s.

Faust talks to Kafka through aiokafka, whose options are not librdkafka's: this adapter maps the bootstrap
servers, ``client.id`` and the security properties (``security.protocol``, ``sasl.*``, ``ssl.*``) set in
``kafka.client_config``, so a SASL/TLS cluster configured once reaches the counting app's consumer and producer
too. Properties with no aiokafka counterpart here (librdkafka tuning) are named once in the log as not applied.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` and no setting to change it; on a broker that
holds fetches open (the local stack's) every detection would wait that long before it is counted.
:class:`CountingFaustApp` uses a transport whose consumer takes ``FETCH_WAIT_MS_COUNTING`` instead.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Mapping
from typing import Any

import faust
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


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class CountingFaustApp(faust.App):
    """``faust.App`` whose consumer waits at most ``FETCH_WAIT_MS_COUNTING`` per fetch (see the module docstring)."""

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)

