"""Avro schemas for every camcount topic and the codec that enforces their versions.

Each message carries its schema name and version in Kafka headers (``camcount-schema``,
``camcount-schema-version``) so consumers can reject, or adapt to, versions they do not know.
Payloads are schemaless Avro (fastavro): the schema travels by name and version, not in the message.

Evolution: a schema's current version N lives in ``<stem>.avsc``; each earlier version k keeps its writer schema,
unchanged, in ``<stem>.v<k>.avsc``. Every field added after version 1 has a default, so a consumer at version N
reads versions 1..N (Avro schema resolution fills the defaults) and refuses newer ones. Producers always write N.
Upgrade consumers before producers.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro
from fastavro.validation import validate

from foundation.errors import CamcountError

SCHEMA_HEADER = "camcount-schema"
SCHEMA_VERSION_HEADER = "camcount-schema-version"

_SCHEMA_DIR = Path(__file__).resolve().parent


class SchemaError(CamcountError):
    """A message does not match the schema its topic requires."""

    code = "INF_001"  # input validation failed
    detail = "invalid-record"


class UnknownSchemaVersion(SchemaError):
    """The record's schema version header is newer than this reader (or missing); upgrade the consumer."""

    code = "INF_001"
    detail = "unknown-schema-version"


class UndecodablePayload(SchemaError):
    """The bytes are not a valid record of the topic's schema."""

    code = "INF_001"
    detail = "undecodable-record"


@dataclass(frozen=True)
class AvroCodec:
    """Encodes one schema at its current ``version`` and decodes every version from 1 to ``version``.

    ``file`` holds the current version; version k < ``version`` is read from ``<stem>.v<k>.avsc`` beside it.
    ``decode`` refuses other schemas and versions newer than ``version`` (UnknownSchemaVersion).
    """

    name: str
    version: int
    file: str

    @cached_property
    def parsed(self) -> Any:
        """The current version's schema: what ``encode`` writes and what ``decode`` returns."""
        return _parse(self.file)

    @cached_property
    def _writers(self) -> dict[int, Any]:
        """The writer schema of every version this codec reads, current included."""
        stem = self.file.removesuffix(".avsc")
        return {**{k: _parse(f"{stem}.v{k}.avsc") for k in range(1, self.version)}, self.version: self.parsed}

    def headers(self) -> list[tuple[str, bytes]]:
        return [(SCHEMA_HEADER, self.name.encode()), (SCHEMA_VERSION_HEADER, str(self.version).encode())]

    def encode(self, record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self.parsed, record)
        return buffer.getvalue()

    def writer_version(self, headers: dict[str, bytes] | None) -> int:
        """The version the headers declare; raises UnknownSchemaVersion unless they name this schema at a
        version from 1 to ``self.version``."""
        headers = headers or {}
        name = headers.get(SCHEMA_HEADER, b"").decode(errors="replace")
        version = headers.get(SCHEMA_VERSION_HEADER, b"").decode(errors="replace")
        # int() raises ValueError on more than 4300 digits (Python 3.11+): no version we read has more than 9
        known = version.isascii() and version.isdigit() and len(version) <= 9 and 1 <= int(version) <= self.version
        if name != self.name or not known:
            supported = f"v{self.version}" if self.version == 1 else f"v1 to v{self.version}"
            raise UnknownSchemaVersion(
                f"expected schema {self.name} {supported}, got {name[:40] or '(none)'} v{version[:12] or '(none)'}: "
                f"upgrade this consumer or re-produce the message with a supported version"
            )
        return int(version)

    def decode(self, payload: bytes, headers: dict[str, bytes] | None = None) -> dict[str, Any]:
        """The record as the current version: an older writer's record gets the defaults of the fields it lacks.

        Without ``headers`` the payload is taken to be of the current version.
        """
        version = self.version if headers is None else self.writer_version(headers)
        reader = None if version == self.version else self.parsed  # None: no schema resolution needed
        try:
            record = fastavro.schemaless_reader(io.BytesIO(payload), self._writers[version], reader)
            validate(record, self.parsed)  # the reader takes an int's varint up to 64 bits: 2**31 is no Avro int
            return record
        except Exception as exc:  # fastavro raises many types (EOFError, UnicodeDecodeError, ValidationError, ...)
            raise UndecodablePayload(
                f"payload is not a valid {self.name} v{version} Avro record: {exc!r}") from exc


def _parse(file: str) -> Any:
    return fastavro.parse_schema(json.loads((_SCHEMA_DIR / file).read_text()))


FRAME = AvroCodec("frame", 2, "frame.avsc")
DETECTIONS = AvroCodec("detections", 4, "detections.avsc")
CROSSING = AvroCodec("crossing", 1, "crossing.avsc")
WINDOW_COUNT = AvroCodec("window-count", 2, "window_count.avsc")
SHADOW_PAIR = AvroCodec("shadow-pair", 2, "shadow_pair.avsc")
ZONE_OCCUPANCY = AvroCodec("zone-occupancy", 2, "zone_occupancy.avsc")
MODEL_HEALTH = AvroCodec("model-health", 1, "model_health.avsc")


def headers_dict(headers: list[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Kafka headers (a list of pairs, possibly with None values) as a dict of bytes; last value wins."""
    return {key: value or b"" for key, value in (headers or [])}
