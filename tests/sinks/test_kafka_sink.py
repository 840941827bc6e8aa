"""The ClickHouse sink against the real broker and ClickHouse of the session stack: a record it cannot decode
stops it without committing past that record, so nothing is lost to a rolling upgrade or a corrupt message."""

from __future__ import annotations

import threading
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from camcount.kafka_config import consumer_config, producer_config
from schemas import CROSSING, SCHEMA_HEADER, SCHEMA_VERSION_HEADER
from sinks.kafka_sink import ClickHouseSink, UnreadableRecord

pytestmark = [pytest.mark.integration]

CROSSING_RECORD = {"event_id": "e1", "camera_id": "cam", "frame_seq": 1, "capture_ts_ms": 1_700_000_000_000,
                   "line": "L", "direction": "in", "track_id": 1, "class_name": "person", "model_name": "m",
                   "model_version": "1.0.0", "variant": "", "experiment": ""}
GOOD = CROSSING.encode(CROSSING_RECORD)
NEXT_VERSION = [(SCHEMA_HEADER, b"crossing"), (SCHEMA_VERSION_HEADER, str(CROSSING.version + 1).encode())]


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
def test_a_record_the_sink_cannot_decode_stops_it_without_committing_past_that_record(
    isolated_settings, value, headers, reason
):
    settings = isolated_settings(1)
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
