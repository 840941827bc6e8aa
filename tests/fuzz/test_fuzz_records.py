"""Fuzzing the record codecs as the counting app (``detections``) and the ClickHouse sink (every topic it stores)
call them: whatever value and headers a producer writes, ``codec.decode(value, headers_dict(headers))`` returns a
valid record of the codec's current schema or raises UnknownSchemaVersion or UndecodablePayload, never anything else,
and never allocates much more than the message's own size."""

from __future__ import annotations

import io
import json
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import fastavro
import pytest
from fastavro.validation import validate
from hypothesis import event, given, settings
from hypothesis import strategies as st

import schemas
from schemas import (
    CROSSING,
    DETECTIONS,
    SCHEMA_HEADER,
    SCHEMA_VERSION_HEADER,
    SHADOW_PAIR,
    WINDOW_COUNT,
    ZONE_OCCUPANCY,
    AvroCodec,
    SchemaError,
    UndecodablePayload,
    UnknownSchemaVersion,
    headers_dict,
)
from tests.fuzz.fuzz_strategies import FUZZ, examples, kafka_headers, mutated, records, writer

CODECS = [DETECTIONS, CROSSING, WINDOW_COUNT, ZONE_OCCUPANCY, SHADOW_PAIR]
ALLOWANCE = 256 * 1024
"""Bytes a decode may allocate beyond eight times the message's size, headers included (the record's dict, its ints and
strings; an error message quoting the headers)."""


@contextmanager
def _allocates_at_most(limit: int) -> Iterator[None]:
    """Traces Python's allocations only around the decode: tracing the generation too would slow it tenfold."""
    if tracemalloc.is_tracing():  # someone else's trace: leave it running
        yield
        return
    tracemalloc.start()
    try:
        yield
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= limit, f"decoding allocated {peak} bytes, over {limit}"


@st.composite
def messages(draw: st.DrawFn, codec: AvroCodec) -> tuple[bytes | None, list[tuple[str, bytes | None]], bool]:
    """(value, headers, intact): a record of any version the codec reads, as its producer wrote it (intact when
    the headers are the producer's too), mutated, replaced by random bytes, by a tombstone, or by a record of
    another topic."""
    version = draw(st.integers(1, codec.version))
    source = writer(codec, version)
    value = source.encode(draw(records(source.parsed)))
    kind = draw(st.sampled_from(["as-is", "as-is", "mutated", "mutated", "random", "none", "other-topic"]))
    if kind == "mutated":
        value = draw(mutated(value))
    elif kind == "random":
        value = draw(st.binary(max_size=512))
    elif kind == "none":
        value = None
    elif kind == "other-topic":
        other = draw(st.sampled_from([c for c in CODECS if c is not codec]))
        value = other.encode(draw(records(other.parsed)))
    pairs = draw(kafka_headers(codec, version))
    return value, pairs, kind == "as-is" and pairs == source.headers()


def _decode_checked(codec: AvroCodec, value: bytes | None, pairs: list[tuple[str, bytes | None]]) -> dict | None:
    """The decoded record (checked against the current schema), or None when it was refused as documented."""
    try:
        size = len(value or b"") + sum(len(key) + len(header or b"") for key, header in pairs)
        with _allocates_at_most(8 * size + ALLOWANCE):
            record = codec.decode(value, headers_dict(pairs))
    except SchemaError as exc:
        event(type(exc).__name__)
        assert type(exc) in (UnknownSchemaVersion, UndecodablePayload), repr(exc)
        assert (exc.code, exc.detail) in {("INF_001", "unknown-schema-version"), ("INF_001", "undecodable-record")}
        return None
    event("decoded")
    assert validate(record, codec.parsed, raise_errors=True)
    assert set(record) == {field["name"] for field in codec.parsed["fields"]}
    return record


@pytest.mark.slow
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@settings(FUZZ, max_examples=examples(300))
@given(data=st.data())
def test_any_message_decodes_to_a_valid_record_or_is_refused_as_documented(codec, data):
    value, pairs, intact = data.draw(messages(codec), label="message")
    record = _decode_checked(codec, value, pairs)
    assert record is not None or not intact, "a record as its producer wrote it was refused"


# Inputs the fuzzing found, and their neighbours.

@pytest.mark.parametrize("version", [b"9" * 4301, b"0" * 4999 + b"1", b"1" * 100_000])
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_a_version_header_of_thousands_of_digits_is_an_unknown_version(codec, version):
    """int() refuses strings of more than 4300 digits (ValueError) since Python 3.11."""
    headers = {SCHEMA_HEADER: codec.name.encode(), SCHEMA_VERSION_HEADER: version}
    with pytest.raises(UnknownSchemaVersion, match="upgrade this consumer"):
        codec.decode(b"", headers)


@pytest.mark.parametrize("value", [None, b"", b"\x80" * 10, b"\x81\x80\x80\x80\x80\x80\x80\x80\x80\x01",
                                   b"\x01" + b"\xff" * 64, b"\x02\xff\xfe"])
@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_tombstones_endless_varints_negative_lengths_and_bad_utf8_are_undecodable(codec, value):
    with pytest.raises(UndecodablePayload):
        codec.decode(value, dict(codec.headers()))


@pytest.mark.parametrize(("codec", "value"), [
    # v1 zone-occupancy whose ``exits`` (an Avro int) holds 2148024353: fastavro read it without a range check
    (ZONE_OCCUPANCY, b"\x00\x00\x00\x00\x00\x00\x00\n\xc2\x80\xc2\x80\x10\x00\x00\x00\x00\x00\x00"),
    # v1 shadow-pair whose ``matched_boxes`` (an Avro int) holds 2**31
    (SHADOW_PAIR, b"\x00\x00\x00\x80\x80\x01\x00\ncam-1\x04\xc3\xa9\x04\xc3\xa9\x80\x80\x01\x80\x00\x80\x80\x80\x80"
                  b"\x10\x00\x00\x00\x00\x00\x00\x00\x00"),
], ids=["zone-occupancy-exits", "shadow-pair-matched-boxes"])
def test_an_int_field_past_32_bits_is_undecodable(codec, value):
    with pytest.raises(UndecodablePayload, match="ValidationError"):
        codec.decode(value, dict(writer(codec, 1).headers()))


def _written_with_longs_for_ints(codec: AvroCodec, record: dict) -> bytes:
    """``record`` as a producer writes it whose copy of the schema has every int widened to a long."""
    schema = json.loads((Path(schemas.__file__).parent / codec.file).read_text().replace('"int"', '"long"'))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), record)
    return buffer.getvalue()


@pytest.mark.parametrize("change", [{"class_id": [2**31]}, {"width": -(2**31) - 1}, {"source_partition": 2**40}])
def test_an_int_past_32_bits_in_a_detections_record_is_undecodable(change):
    record = {"camera_id": "c", "frame_seq": 1, "capture_ts_ms": 1, "width": 4, "height": 3, "status": "OK",
              "model_name": "m", "model_version": "1", "xyxy": [0.0, 0.0, 1.0, 1.0], "confidence": [0.5],
              "class_id": [0], **change}
    with pytest.raises(UndecodablePayload, match="ValidationError"):
        DETECTIONS.decode(_written_with_longs_for_ints(DETECTIONS, record), dict(DETECTIONS.headers()))
