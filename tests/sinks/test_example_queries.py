"""The analysts' example queries in infra/clickhouse/queries, run as a user would from Python against a small
known dataset on the stack's server, and run on modern ClickHouse (chDB) to show they use SQL both understand.
The dataset includes replays (rows written twice) and rows outside the queried range or experiment, none of
which may change the numbers."""

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from chdb.session import Session
from clickhouse_driver import Client

from foundation.clickhouse import CLICKHOUSE_DDL_DIR
from foundation.settings import Settings
from tests.chdb_ddl import apply_ddl_in_chdb
from tests.services import clickhouse_client_for

RANGE = {"start": datetime(2024, 5, 1, 10), "end": datetime(2024, 5, 1, 12)}
H10, H11 = datetime(2024, 5, 1, 10, tzinfo=UTC), datetime(2024, 5, 1, 11, tzinfo=UTC)

# (event_id, camera, line, class, direction, capture time hh:mm:ss on 2024-05-01, variant)
CROSSINGS = [
    ("a1", "cam-1", "L1", "person", "in", "10:05:00", "control"),
    ("a1", "cam-1", "L1", "person", "in", "10:05:00", "control"),  # replayed
    ("a2", "cam-1", "L1", "person", "in", "10:20:00", "control"),
    ("a3", "cam-1", "L1", "person", "out", "10:40:00", "control"),
    ("c1", "cam-1", "L1", "car", "in", "10:07:00", "control"),
    ("a4", "cam-1", "L1", "person", "in", "11:10:00", "control"),
    ("a5", "cam-1", "L1", "person", "out", "11:30:00", "control"),
    ("a6", "cam-1", "L1", "person", "out", "11:50:00", "control"),
    ("a7", "cam-1", "L1", "person", "in", "12:30:00", "control"),  # after the range
    ("b1", "cam-2", "G", "person", "in", "10:15:00", "candidate"),
    ("b2", "cam-2", "G", "person", "in", "10:15:30", "candidate"),
    ("b3", "cam-2", "G", "person", "out", "10:15:45", "candidate"),
]
VERSIONS = {"control": "1.0.0", "candidate": "2.0.0"}

# (camera, frame, capture time, experiment, variant, status, detections, infer_ms); e2e_ms is infer_ms + 100
FRAMES = [
    ("cam-1", 1, "10:00:00", "exp-1", "control", "ok", 1, 10.0),
    ("cam-1", 1, "10:00:00", "exp-1", "control", "ok", 1, 10.0),  # replayed
    ("cam-1", 2, "10:00:01", "exp-1", "control", "ok", 2, 20.0),
    ("cam-1", 3, "10:00:02", "exp-1", "control", "ok", 3, 30.0),
    ("cam-1", 4, "10:00:03", "exp-1", "control", "ok", 4, 40.0),
    ("cam-1", 5, "10:00:04", "exp-1", "control", "ok", 5, 50.0),
    ("cam-1", 6, "11:00:00", "exp-1", "control", "error", 0, 0.0),
    ("cam-1", 7, "12:00:00", "exp-1", "control", "skipped", 0, 0.0),
    ("cam-2", 1, "10:15:00", "exp-1", "candidate", "ok", 1, 5.0),
    ("cam-2", 2, "10:15:01", "exp-1", "candidate", "ok", 4, 15.0),
    ("cam-3", 1, "10:00:00", "exp-0", "control", "ok", 9, 900.0),  # another experiment
]

# (minute hh:mm:ss, frames, max_occupancy, occupancy_sum, entries, exits, dwell_ms_sum) of cam-1 zone "door", person
ZONE_MINUTES = [
    ("10:00:00", 100, 1, 100, 1, 0, 0),  # an early emission of the 10:00 minute
    ("10:00:00", 300, 3, 600, 2, 1, 4000),
    ("10:00:00", 300, 3, 600, 2, 1, 4000),  # replayed
    ("10:01:00", 600, 2, 600, 0, 1, 8000),
    ("11:00:00", 600, 0, 0, 0, 0, 0),
    ("12:00:00", 600, 9, 5400, 9, 9, 9000),  # after the range
]


def at(hms: str) -> datetime:
    return datetime.fromisoformat(f"2024-05-01T{hms}")


def dataset() -> dict[str, list[dict[str, Any]]]:
    """The rows to insert, per table."""
    return {
        "crossing_events": [
            {"event_id": event_id, "camera_id": camera, "frame_seq": 0, "capture_time": at(hms),
             "capture_ts_ms": int(at(hms).replace(tzinfo=UTC).timestamp() * 1000), "line": line,
             "direction": direction, "track_id": 0, "class_name": class_name, "model_name": "yolo",
             "model_version": VERSIONS[variant], "variant": variant, "experiment": "exp-1"}
            for event_id, camera, line, class_name, direction, hms, variant in CROSSINGS
        ],
        "inference_log": [
            {"camera_id": camera, "frame_seq": frame, "capture_time": at(hms),
             "capture_ts_ms": int(at(hms).replace(tzinfo=UTC).timestamp() * 1000), "model_name": "yolo",
             "model_version": VERSIONS[variant], "variant": variant, "experiment": experiment, "status": status,
             "detections": detections, "mean_confidence": 0.5, "infer_ms": infer_ms, "e2e_ms": infer_ms + 100}
            for camera, frame, hms, experiment, variant, status, detections, infer_ms in FRAMES
        ],
        "zone_occupancy": [
            {"camera_id": "cam-1", "zone": "door", "class_name": "person", "minute": at(hms), "frames": frames,
             "max_occupancy": peak, "occupancy_sum": occupancy_sum, "entries": entries, "exits": exits,
             "dwell_ms_sum": dwell_ms_sum, "model_name": "yolo", "model_version": "1.0.0", "variant": "control",
             "experiment": "exp-1", "updated_ms": frames}
            for hms, frames, peak, occupancy_sum, entries, exits, dwell_ms_sum in ZONE_MINUTES
        ],
    }


def query(name: str) -> str:
    return (CLICKHOUSE_DDL_DIR / "queries" / f"{name}.sql").read_text()


@pytest.fixture(scope="module")
def client(isolated_settings: Callable[..., Settings]) -> Iterator[Client]:
    """A client on a fresh database of the stack's server holding the dataset."""
    client = clickhouse_client_for(isolated_settings())
    for table, rows in dataset().items():
        for row in rows:  # one insert each, so replayed rows land in separate parts as retried inserts would
            client.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES", [row])
    yield client
    client.disconnect()


@pytest.fixture(scope="module")
def chdb_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    """A fresh chDB directory with the DDL applied and the dataset inserted."""
    session = Session(str(tmp_path_factory.mktemp("chdb")))
    try:
        apply_ddl_in_chdb(session, "camcount")
        for table, rows in dataset().items():
            for row in rows:
                session.query(f"INSERT INTO {table} FORMAT JSONEachRow {json.dumps(row, default=str)}")
        yield session
    finally:
        session.close()


def run(client: Client, name: str, **params: Any) -> list[tuple[Any, ...]]:
    return client.execute(query(name), params)


@pytest.mark.integration
def test_counts_per_camera_hour_split_entered_and_exited_per_class(client: Client) -> None:
    assert run(client, "counts_per_camera_hour", **RANGE) == [
        (H10, "cam-1", "car", 1, 0, 1),
        (H10, "cam-1", "person", 2, 1, 3),
        (H10, "cam-2", "person", 2, 1, 3),
        (H11, "cam-1", "person", 1, 2, 3),
    ]


@pytest.mark.integration
def test_busiest_minutes_come_busiest_first_then_earliest(client: Client) -> None:
    assert run(client, "busiest_minutes", top=2, **RANGE) == [
        (datetime(2024, 5, 1, 10, 15, tzinfo=UTC), "cam-2", 3, 2, 1),
        (datetime(2024, 5, 1, 10, 5, tzinfo=UTC), "cam-1", 1, 1, 0),
    ]


@pytest.mark.integration
def test_net_flow_per_line_hour_accumulates_into_an_occupancy_estimate(client: Client) -> None:
    assert run(client, "net_flow_per_line_hour", class_name="person", **RANGE) == [
        ("cam-1", "L1", H10, 2, 1, 1, 1),
        ("cam-1", "L1", H11, 1, 2, -1, 0),
        ("cam-2", "G", H10, 2, 1, 1, 1),
    ]


@pytest.mark.integration
def test_variant_comparison_summarises_each_variant_of_the_experiment(client: Client) -> None:
    rows = run(client, "variant_comparison", experiment="exp-1")

    # frames, errors, infer p50/p95, e2e p50/p95, detections per frame, camera-hours, crossings, per camera-hour
    assert [row[:3] for row in rows] == [("candidate", "yolo", "2.0.0"), ("control", "yolo", "1.0.0")]
    assert [row[3:] for row in rows] == [
        (2, 0, 10.0, 14.5, 110.0, 114.5, 2.5, 1, 3, 3.0),
        (6, 1, 30.0, 48.0, 130.0, 148.0, 3.0, 2, 8, 4.0),
    ]


@pytest.mark.integration
def test_zone_occupancy_per_hour_averages_over_frames_and_dwell_over_exits(client: Client) -> None:
    assert run(client, "zone_occupancy_per_hour", **RANGE) == [
        (H10, "cam-1", "door", "person", 900, pytest.approx(1200 / 900), 3, 2, 2, 6.0),
        (H11, "cam-1", "door", "person", 600, 0.0, 0, 0, 0, None),
    ]


def sql_literal(value: Any) -> str:
    """``value`` as clickhouse-driver renders a parameter (for the test values: no quotes to escape)."""
    if isinstance(value, datetime):
        return f"'{value:%Y-%m-%d %H:%M:%S}'"
    return f"'{value}'" if isinstance(value, str) else str(value)


@pytest.mark.parametrize(("name", "params", "row_count"), [
    ("counts_per_camera_hour", RANGE, 4),
    ("busiest_minutes", {"top": 2, **RANGE}, 2),
    ("net_flow_per_line_hour", {"class_name": "person", **RANGE}, 3),
    ("variant_comparison", {"experiment": "exp-1"}, 2),
    ("zone_occupancy_per_hour", RANGE, 2),
])
def test_example_query_runs_on_modern_clickhouse(name: str, params: dict[str, Any], row_count: int,
                                                 chdb_session: Session) -> None:
    sql = query(name) % {key: sql_literal(value) for key, value in params.items()}

    assert len(str(chdb_session.query(sql, "TSV")).splitlines()) == row_count
