"""The ClickHouse sink against the real broker and ClickHouse of the session stack: a record it cannot decode is
set aside on the records dead-letter topic and the flow goes on (or, in strict mode, stops the sink without
committing past that record), so nothing is lost to a rolling upgrade or a corrupt message; a record of an earlier
schema version is written with its traceability columns marked unknown."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from foundation.kafka import consumer_config, producer_config
from foundation.settings import Settings
from schemas import CROSSING, SCHEMA_HEADER, SCHEMA_VERSION_HEADER, SHADOW_PAIR, WINDOW_COUNT, ZONE_OCCUPANCY, AvroCodec
from sinks.kafka_sink import ClickHouseSink, UnreadableRecord
from tests.pipeline import consume_records
from tests.services import clickhouse_client_for

pytestmark = [pytest.mark.integration]

CROSSING_RECORD = {"event_id": "e1", "camera_id": "cam", "frame_seq": 1, "capture_ts_ms": 1_700_000_000_000,
                   "line": "L", "direction": "in", "track_id": 1, "class_name": "person", "model_name": "m",
                   "model_version": "1.0.0", "variant": "", "experiment": ""}
GOOD = CROSSING.encode(CROSSING_RECORD)
NEXT_VERSION = [(SCHEMA_HEADER, b"crossing"), (SCHEMA_VERSION_HEADER, str(CROSSING.version + 1).encode())]

# What the previous release produced: the v1 schemas, without the traceability fields.
WINDOW_V1 = {"camera_id": "cam", "window_start_ms": 1_700_000_040_000, "window_seconds": 60, "line": "L",
             "class_name": "person", "direction": "in", "variant": "", "experiment": "", "model_name": "m",
             "model_version": "1.0.0", "count": 2, "updated_ms": 1_700_000_050_000}
ZONE_V1 = {"camera_id": "cam", "zone": "door", "class_name": "person", "minute_ms": 1_700_000_040_000, "frames": 5,
           "max_occupancy": 1, "occupancy_sum": 3, "entries": 1, "exits": 0, "dwell_ms_sum": 0, "model_name": "m",
           "model_version": "1.0.0", "variant": "", "experiment": "", "updated_ms": 1_700_000_050_000}
SHADOW_V1 = {"experiment": "exp", "camera_id": "cam", "frame_seq": 7, "capture_ts_ms": 1_700_000_045_000,
             "control_variant": "control", "candidate_variant": "int8", "control_model_version": "1.0.0",
             "candidate_model_version": "1.0.0-int8", "control_detections": 1, "candidate_detections": 1,
             "matched_boxes": 1, "control_infer_ms": 9.0, "candidate_infer_ms": 4.0}
FRAME_TRACE = {"last_frame_seq": 41, "last_capture_ts_ms": 1_700_000_044_100}
MODEL_NAMES = {"control_model_name": "yolov8n", "candidate_model_name": "yolov8n-int8"}
TRACEABILITY = {  # per table: the query of its traceability columns, and what they hold for a v1 and a v2 record
    "window_counts": ("SELECT last_frame_seq, last_capture_ts_ms FROM window_counts FINAL",
                      (-1, -1), (41, 1_700_000_044_100)),
    "zone_occupancy": ("SELECT last_frame_seq, last_capture_ts_ms FROM zone_occupancy FINAL",
                       (-1, -1), (41, 1_700_000_044_100)),
    "shadow_pairs": ("SELECT control_model_name, candidate_model_name FROM shadow_pairs FINAL",
                     ("", ""), ("yolov8n", "yolov8n-int8")),
}


def _v1(codec: AvroCodec) -> AvroCodec:
    """The codec the previous release produced with: version 1, from the schema file kept for it."""
    return AvroCodec(codec.name, 1, codec.file.replace(".avsc", ".v1.avsc"))


def _produce_window_zone_and_shadow_records(settings: Settings, version: int) -> None:
    outputs = [(settings.kafka.window_counts_topic, WINDOW_COUNT, WINDOW_V1, FRAME_TRACE),
               (settings.kafka.zone_occupancy_topic, ZONE_OCCUPANCY, ZONE_V1, FRAME_TRACE),
               (settings.kafka.shadow_topic, SHADOW_PAIR, SHADOW_V1, MODEL_NAMES)]
    producer = Producer(producer_config(settings))
    for topic, codec, record, added in outputs:
        writer = _v1(codec) if version == 1 else codec
        value = writer.encode(record if version == 1 else {**record, **added})
        producer.produce(topic, key=b"cam", value=value, headers=writer.headers())
    assert producer.flush(10) == 0


def _run_until(sink: ClickHouseSink, done: Callable[[], bool], timeout_s: float) -> None:
    """Run the sink on a thread until ``done()`` or the timeout, then stop it."""
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    try:
        while not done() and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.3)
    finally:
        sink.stop()
        thread.join(30)


def _run_until_it_stops(sink: ClickHouseSink, timeout_s: float) -> Exception | None:
    """Run the sink on a thread; the exception it stopped with, None if it was still running after the timeout."""
    failure: list[Exception] = []

    def run() -> None:
        try:
            sink.run()
        except Exception as exc:  # handed to the test
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        sink.stop()
        thread.join(30)
        return None
    return failure[0] if failure else None


@pytest.mark.parametrize(("value", "headers", "reason"), [
    (GOOD, NEXT_VERSION, f"got crossing v{CROSSING.version + 1}"),
    (GOOD[:3], CROSSING.headers(), "not a valid crossing"),
], ids=["unknown-schema-version", "corrupt-payload"])
def test_in_strict_mode_a_record_the_sink_cannot_decode_stops_it_without_committing_past_that_record(
    isolated_settings, value, headers, reason
):
    settings = isolated_settings(1)
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"bad_records": "stop"})})
    topic = settings.kafka.crossings_topic
    producer = Producer(producer_config(settings))
    producer.produce(topic, key=b"cam", value=GOOD, headers=CROSSING.headers())  # offset 0
    producer.produce(topic, key=b"cam", value=value, headers=headers)  # offset 1
    assert producer.flush(10) == 0
    group = f"sink-{uuid.uuid4().hex[:8]}"

    stopped = _run_until_it_stops(ClickHouseSink(settings, group_id=group), timeout_s=60)

    assert isinstance(stopped, UnreadableRecord) and f"{topic}/0/1" in str(stopped) and reason in str(stopped)
    reader = Consumer(consumer_config(settings, group))
    try:
        committed = reader.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
    finally:
        reader.close()
    assert committed <= 1  # the next offset to read is at most the unreadable record's


@pytest.mark.parametrize(("value", "headers", "detail"), [
    (GOOD, NEXT_VERSION, "unknown-schema-version"),
    (GOOD[:3], CROSSING.headers(), "undecodable-record"),
    (CROSSING.encode({**CROSSING_RECORD, "event_id": "far", "capture_ts_ms": 2**62}), CROSSING.headers(),
     "undecodable-record"),
], ids=["unknown-schema-version", "corrupt-payload", "capture-time-past-year-9999"])
def test_a_record_the_sink_cannot_decode_is_set_aside_with_its_source_and_the_records_after_it_are_written(
    isolated_settings, value, headers, detail
):
    settings = isolated_settings(1)
    topic = settings.kafka.crossings_topic
    after = CROSSING.encode({**CROSSING_RECORD, "event_id": "e2", "frame_seq": 2})
    producer = Producer(producer_config(settings))
    producer.produce(topic, key=b"cam", value=GOOD, headers=CROSSING.headers())  # offset 0
    producer.produce(topic, key=b"cam", value=value, headers=headers)  # offset 1
    producer.produce(topic, key=b"cam", value=after, headers=CROSSING.headers())  # offset 2
    assert producer.flush(10) == 0
    group = f"sink-{uuid.uuid4().hex[:8]}"
    sink = ClickHouseSink(settings, group_id=group)
    client = clickhouse_client_for(settings)

    def stored() -> list[str]:
        return sorted(row[0] for row in client.execute("SELECT event_id FROM crossing_events FINAL"))

    _run_until(sink, lambda: stored() == ["e1", "e2"] and sink.dead_letters == 1, timeout_s=60)

    assert stored() == ["e1", "e2"] and sink.dead_letters == 1
    (dead,) = consume_records(settings, settings.kafka.records_dead_letter_topic, lambda rs: len(rs) >= 1,
                              timeout_s=30, decode=lambda raw, _: {"value": raw})
    assert dead["value"] == value
    assert (dead["_headers"]["dlq-error-code"], dead["_headers"]["dlq-error-detail"], dead["_headers"]["dlq-source"]) \
        == (b"INF_001", detail.encode(), f"{topic}/0/1".encode())
    assert sink.metrics_registry.get_sample_value("camcount_sink_dead_records_total",
                                                  {"topic": topic, "code": "INF_001", "detail": detail}) == 1
    reader = Consumer(consumer_config(settings, group))
    try:
        assert reader.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 3
    finally:
        reader.close()


@pytest.mark.parametrize("version", [1, 2], ids=["previous-release-v1", "current-v2"])
def test_window_zone_and_shadow_records_of_every_readable_version_reach_clickhouse_with_their_traceability(
    isolated_settings, version
):
    settings = isolated_settings(1)
    _produce_window_zone_and_shadow_records(settings, version)
    client = clickhouse_client_for(settings)
    try:
        def stored() -> dict[str, list[tuple]]:
            return {table: client.execute(query) for table, (query, *_) in TRACEABILITY.items()}

        _run_until(ClickHouseSink(settings, group_id=f"sink-{uuid.uuid4().hex[:8]}"),
                   lambda: all(stored().values()), timeout_s=60)
        assert stored() == {table: [expected[version - 1]] for table, (_, *expected) in TRACEABILITY.items()}
    finally:
        client.disconnect()
