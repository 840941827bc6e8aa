"""Row builders and batched inserts into the ClickHouse tables of ``infra/clickhouse``.

Every table is a ReplacingMergeTree keyed so that re-inserting a row (a replay, a retried insert) replaces
it instead of adding to it; queries read with FINAL (or through the views that do).

Records arrive decoded at their schema's current version: an older writer's record carries the defaults of the
fields added since (-1 or ""), which are written as they are, meaning "unknown".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from clickhouse_driver import Client

from foundation import topics
from foundation.topics import Stream
from schemas import CROSSING, DETECTIONS, SHADOW_PAIR, WINDOW_COUNT, ZONE_OCCUPANCY, AvroCodec

log = logging.getLogger(__name__)

CROSSING_COLUMNS = ("event_id", "camera_id", "frame_seq", "capture_time", "capture_ts_ms", "line", "direction",
                    "track_id", "class_name", "model_name", "model_version", "variant", "experiment")
WINDOW_COLUMNS = ("camera_id", "window_start", "window_seconds", "line", "class_name", "direction", "variant",
                  "experiment", "model_name", "model_version", "last_frame_seq", "last_capture_ts_ms", "count",
                  "updated_ms")
SHADOW_COLUMNS = ("experiment", "camera_id", "frame_seq", "capture_time", "capture_ts_ms", "control_variant",
                  "candidate_variant", "control_model_name", "candidate_model_name", "control_model_version",
                  "candidate_model_version", "control_detections", "candidate_detections", "matched_boxes",
                  "control_infer_ms", "candidate_infer_ms")
ZONE_COLUMNS = ("camera_id", "zone", "class_name", "minute", "frames", "max_occupancy", "occupancy_sum", "entries",
                "exits", "dwell_ms_sum", "model_name", "model_version", "variant", "experiment", "last_frame_seq",
                "last_capture_ts_ms", "updated_ms")
INFERENCE_COLUMNS = ("camera_id", "frame_seq", "capture_time", "capture_ts_ms", "model_name", "model_version",
                     "variant", "experiment", "status", "detections", "mean_confidence", "infer_ms", "e2e_ms",
                     "fallback")
"""The per-frame columns of ``inference_log`` (what a row written without per-box data holds)."""
INFERENCE_BOX_COLUMNS = ("box_classes", "box_confidences", "box_area_ratios")
"""Per-box columns (``061_output_aggregates.sql``), empty arrays when left out of an insert."""


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).replace(microsecond=0)


def crossing_row(record: dict[str, Any]) -> tuple:
    return (record["event_id"], record["camera_id"], record["frame_seq"], _utc(record["capture_ts_ms"]),
            record["capture_ts_ms"], record["line"], record["direction"], record["track_id"], record["class_name"],
            record["model_name"], record["model_version"], record["variant"], record["experiment"])


def window_row(record: dict[str, Any]) -> tuple:
    return (record["camera_id"], _utc(record["window_start_ms"]), *(record[c] for c in WINDOW_COLUMNS[2:]))


def shadow_row(record: dict[str, Any]) -> tuple:
    return (record["experiment"], record["camera_id"], record["frame_seq"], _utc(record["capture_ts_ms"]),
            *(record[c] for c in SHADOW_COLUMNS[4:]))


def zone_row(record: dict[str, Any]) -> tuple:
    return (record["camera_id"], record["zone"], record["class_name"], _utc(record["minute_ms"]),
            *(record[c] for c in ZONE_COLUMNS[4:]))


def box_class_names(record: dict[str, Any]) -> list[str]:
    """The class name of each box of a detections record: ``class_names[class_id]``, or the id as text where the
    record carries no name for it."""
    names = record["class_names"]
    return [names[i] if 0 <= i < len(names) else str(i) for i in record["class_id"]]


def box_area_ratios(record: dict[str, Any]) -> list[float]:
    """Each box's area over the frame's (``width`` x ``height``, at least one pixel)."""
    frame = max(record["width"] * record["height"], 1)
    xyxy = record["xyxy"]
    return [max(xyxy[i + 2] - xyxy[i], 0.0) * max(xyxy[i + 3] - xyxy[i + 1], 0.0) / frame
            for i in range(0, len(xyxy) - 3, 4)]


def inference_row(record: dict[str, Any]) -> tuple | None:
    """``e2e_ms``: from capture to the worker finishing the frame (sink batching excluded). The per-box columns
    (``infra/clickhouse/061_output_aggregates.sql``) hold each box's class name, confidence and area ratio.
    None for an end-of-stream marker (status END): it is no frame, and carries its last frame's seq."""
    if record["status"] == "END":
        return None
    confidence = record["confidence"]
    return (record["camera_id"], record["frame_seq"], _utc(record["capture_ts_ms"]), record["capture_ts_ms"],
            record["model_name"], record["model_version"], record["variant"], record["experiment"],
            record["status"].lower(), len(confidence), sum(confidence) / len(confidence) if confidence else 0.0,
            record["infer_ms"], float(max(record["inferred_ts_ms"] - record["capture_ts_ms"], 0)),
            int(record["fallback"]), box_class_names(record), list(confidence), box_area_ratios(record))


@dataclass(frozen=True)
class SinkTable:
    """Where the sink puts one stream's records: decoded with ``codec``, built by ``row`` into ``table`` (a record
    whose ``row`` is None has no row there)."""

    stream: Stream
    codec: AvroCodec
    table: str
    columns: tuple[str, ...]
    row: Callable[[dict[str, Any]], tuple | None]


SINK_TABLES: tuple[SinkTable, ...] = (
    SinkTable(topics.CROSSINGS, CROSSING, "crossing_events", CROSSING_COLUMNS, crossing_row),
    SinkTable(topics.WINDOW_COUNTS, WINDOW_COUNT, "window_counts", WINDOW_COLUMNS, window_row),
    SinkTable(topics.DETECTIONS, DETECTIONS, "inference_log", (*INFERENCE_COLUMNS, *INFERENCE_BOX_COLUMNS),
              inference_row),
    SinkTable(topics.SHADOW_PAIRS, SHADOW_PAIR, "shadow_pairs", SHADOW_COLUMNS, shadow_row),
    SinkTable(topics.ZONE_OCCUPANCY, ZONE_OCCUPANCY, "zone_occupancy", ZONE_COLUMNS, zone_row),
)


class ClickHouseWriter:
    """Inserts row batches; one call per table per batch."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        if rows:
            self.client.execute(f"INSERT INTO {table} ({', '.join(columns)}) VALUES", rows)

    def close(self) -> None:
        self.client.disconnect()
