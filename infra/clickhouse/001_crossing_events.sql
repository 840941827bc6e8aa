-- One row per line crossing. event_id is deterministic (camera, line, track, direction, frame), so a replay
-- or a retried insert writes the same row again and ReplacingMergeTree keeps one: query with FINAL.
CREATE TABLE IF NOT EXISTS crossing_events
(
    event_id      String,
    camera_id     LowCardinality(String),
    frame_seq     UInt64,
    capture_time  DateTime('UTC'),
    capture_ts_ms UInt64,
    line          LowCardinality(String),
    direction     Enum8('in' = 1, 'out' = 2),
    track_id      UInt64,
    class_name    LowCardinality(String),
    model_name    LowCardinality(String),
    model_version LowCardinality(String),
    variant       LowCardinality(String),
    experiment    LowCardinality(String)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(capture_time)
ORDER BY (camera_id, line, capture_time, event_id);
