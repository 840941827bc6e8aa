"""Avro schemas for every camcount topic and the codec that enforces their versions.

Each message carries its schema name and version in Kafka headers (``camcount-schema``,
``camcount-schema-version``) so consumers can reject, or adapt to, versions they do not know.
Payloads are schemaless Avro (fastavro): the schema travels by name and version, not in the message.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_HEADER = "camcount-schema"
SCHEMA_VERSION_HEADER = "camcount-schema-version"

_SCHEMA_DIR = Path(__file__).resolve().parent


class SchemaError(Exception):
    """A message does not match the schema its topic requires."""


class UnknownSchemaVersion(SchemaError):
    pass


class UndecodablePayload(SchemaError):
    pass


@dataclass(frozen=True)
class AvroCodec:
    """Encodes and decodes one schema at one version; ``decode`` refuses other schemas and versions."""

    name: str
    version: int
    file: str

    @cached_property
    def parsed(self) -> Any:
        return fastavro.parse_schema(json.loads((_SCHEMA_DIR / self.file).read_text()))

    def headers(self) -> list[tuple[str, bytes]]:
        return [(SCHEMA_HEADER, self.name.encode()), (SCHEMA_VERSION_HEADER, str(self.version).encode())]

    def encode(self, record: dict[str, Any]) -> bytes:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, self.parsed, record)
        return buffer.getvalue()

    def check_headers(self, headers: dict[str, bytes] | None) -> None:
        """Raise UnknownSchemaVersion unless the headers name this schema at this version."""
        headers = headers or {}
        name = headers.get(SCHEMA_HEADER, b"").decode(errors="replace")
        version = headers.get(SCHEMA_VERSION_HEADER, b"").decode(errors="replace")
        if name != self.name or version != str(self.version):
            raise UnknownSchemaVersion(
                f"expected schema {self.name} v{self.version}, got {name or '(none)'} v{version or '(none)'}: "
                f"upgrade this consumer or re-produce the message with a supported version"
            )

    def decode(self, payload: bytes, headers: dict[str, bytes] | None = None) -> dict[str, Any]:
        if headers is not None:
            self.check_headers(headers)
        try:
            return fastavro.schemaless_reader(io.BytesIO(payload), self.parsed, None)
        except Exception as exc:  # fastavro raises many types (EOFError, UnicodeDecodeError, ...)
            raise UndecodablePayload(
                f"payload is not a valid {self.name} v{self.version} Avro record: {exc!r}") from exc


FRAME = AvroCodec("frame", 1, "frame.avsc")
DETECTIONS = AvroCodec("detections", 1, "detections.avsc")
CROSSING = AvroCodec("crossing", 1, "crossing.avsc")
WINDOW_COUNT = AvroCodec("window-count", 1, "window_count.avsc")
SHADOW_PAIR = AvroCodec("shadow-pair", 1, "shadow_pair.avsc")
ZONE_OCCUPANCY = AvroCodec("zone-occupancy", 1, "zone_occupancy.avsc")


def headers_dict(headers: list[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Kafka headers (a list of pairs, possibly with None values) as a dict of bytes; last value wins."""
    return {key: value or b"" for key, value in (headers or [])}
