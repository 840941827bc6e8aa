"""Per-box columns of ``inference_log`` and the hourly output aggregates
(``infra/clickhouse/061_output_aggregates.sql``) on the stack's server (ClickHouse 18.16) and on modern ClickHouse
(chDB): detections records go in through the sink's row builder, and the views give per class and hour the boxes,
frames and quantiles of confidence and area."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from chdb.session import Session
from clickhouse_driver import Client

from sinks.clickhouse import INFERENCE_BOX_COLUMNS, INFERENCE_COLUMNS, box_area_ratios, box_class_names, inference_row

COLUMNS = (*INFERENCE_COLUMNS, *INFERENCE_BOX_COLUMNS)
T0 = 1714558507000  # 2024-05-01 10:15:07 UTC
PER_CLASS = ("SELECT class_name, frames, boxes, boxes_per_frame, confidence_quantiles[3], area_ratio_quantiles[3] "
             "FROM outputs_hourly ORDER BY class_name")
PER_FRAME = "SELECT frames, boxes, boxes_per_frame FROM outputs_frames_hourly"


def record(seq: int, boxes: list[tuple[int, float, float]], names: list[str] | None = None) -> dict[str, Any]:
    """A detections record of a 100x100 frame with ``boxes`` as (class id, confidence, side in pixels)."""
    xyxy = [v for _, _, side in boxes for v in (10.0, 10.0, 10.0 + side, 10.0 + side)]
    return {"camera_id": "cam-1", "frame_seq": seq, "capture_ts_ms": T0 + seq * 100, "width": 100, "height": 100,
            "status": "OK", "model_name": "yolo", "model_version": "1.0.0", "variant": "", "experiment": "",
            "xyxy": xyxy, "confidence": [c for _, c, _ in boxes], "class_id": [k for k, _, _ in boxes],
            "class_names": ["person", "car"] if names is None else names, "infer_ms": 5.0,
            "inferred_ts_ms": T0 + seq * 100 + 20, "source_partition": 0, "source_offset": seq, "fallback": False}


# three people (10, 20 and 30 px squares: 1, 4 and 9 % of the frame) and a car (50 px: 25 %), then an empty frame
FRAMES = [record(1, [(0, 0.6, 10.0), (0, 0.7, 20.0), (0, 0.8, 30.0), (1, 0.9, 50.0)]), record(2, [])]
EXPECTED = [("car", 2, 1, 0.5, 0.9, 0.25), ("person", 2, 3, 1.5, 0.7, 0.04)]  # medians of confidence and area


def rows(records: list[dict[str, Any]]) -> list[tuple]:
    return [inference_row(r) for r in records]


def test_an_end_of_stream_marker_has_no_inference_log_row():
    assert inference_row({**FRAMES[1], "status": "END"}) is None


def test_a_records_boxes_become_class_names_confidences_and_area_ratios():
    row = dict(zip(COLUMNS, inference_row(FRAMES[0])))
    assert row["box_classes"] == ["person", "person", "person", "car"]
    assert row["box_confidences"] == pytest.approx([0.6, 0.7, 0.8, 0.9])
    assert row["box_area_ratios"] == pytest.approx([0.01, 0.04, 0.09, 0.25])
    assert (row["detections"], row["mean_confidence"]) == (4, pytest.approx(0.75))


def test_a_class_without_a_name_in_the_record_is_named_by_its_id():
    assert box_class_names(record(1, [(0, 0.5, 10.0), (7, 0.5, 10.0)], names=["person"])) == ["person", "7"]


def test_a_frame_without_pixels_gives_areas_over_one_pixel_not_a_division_by_zero():
    broken = record(1, [(0, 0.5, 2.0)]) | {"width": 0, "height": 0}
    assert box_area_ratios(broken) == [4.0]


def chdb_insert(session: Session, records: list[dict[str, Any]]) -> None:
    def value(v: Any) -> Any:
        return v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v

    lines = "\n".join(json.dumps({c: value(v) for c, v in zip(COLUMNS, row)}) for row in rows(records))
    session.query(f"INSERT INTO inference_log FORMAT JSONEachRow\n{lines}")


def chdb_rows(session: Session, sql: str) -> list[tuple]:
    return [tuple(json.loads(line).values()) for line in str(session.query(sql, "JSONEachRow")).splitlines()]


def rounded(found: list[tuple]) -> list[tuple]:
    return [tuple(round(v, 3) if isinstance(v, float) else v for v in row) for row in found]


@pytest.mark.integration
def test_the_hourly_aggregate_gives_boxes_frames_and_quantiles_per_class_on_the_stack_server(stack_client: Client):
    stack_client.execute(f"INSERT INTO inference_log ({', '.join(COLUMNS)}) VALUES", rows(FRAMES))

    assert rounded(stack_client.execute(PER_CLASS)) == EXPECTED
    assert stack_client.execute(PER_FRAME) == [(2, 4, 2.0)]


def test_the_hourly_aggregate_gives_boxes_frames_and_quantiles_per_class_on_modern_clickhouse(chdb_session: Session):
    chdb_insert(chdb_session, FRAMES)

    assert rounded(chdb_rows(chdb_session, PER_CLASS)) == EXPECTED
    assert chdb_rows(chdb_session, PER_FRAME) == [(2, 4, 2.0)]


@pytest.mark.integration
def test_a_replayed_frame_counts_again_in_the_hourly_aggregate_but_once_in_inference_log(stack_client: Client):
    # the documented approximation: materialized views see every insert, FINAL sees the frame once
    for _ in range(2):
        stack_client.execute(f"INSERT INTO inference_log ({', '.join(COLUMNS)}) VALUES", rows(FRAMES[:1]))

    assert stack_client.execute(PER_FRAME) == [(2, 8, 4.0)]
    assert stack_client.execute("SELECT count(), sum(length(box_classes)) FROM inference_log FINAL") == [(1, 4)]


@pytest.mark.integration
def test_rows_written_without_per_box_data_add_frames_but_no_boxes_of_any_class(stack_client: Client):
    old = inference_row(FRAMES[0])[: len(INFERENCE_COLUMNS)]  # an insert that names only the per-frame columns
    stack_client.execute(f"INSERT INTO inference_log ({', '.join(INFERENCE_COLUMNS)}) VALUES", [old])

    assert stack_client.execute("SELECT box_classes, box_area_ratios FROM inference_log") == [([], [])]
    assert stack_client.execute(PER_FRAME) == [(1, 4, 4.0)]
    assert stack_client.execute(PER_CLASS) == []
