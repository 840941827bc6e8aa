-- Tumbling-window counts emitted by the Faust counting app. A window's row is re-emitted whenever its count
-- changes. A window's count only grows, so ReplacingMergeTree(count) keeps the latest value, and re-emits and
-- replays never add up. last_frame_seq / last_capture_ts_ms: the counted frame that last changed the count (it
-- confirmed the crossing); -1 for rows written before window-count schema v2.
CREATE TABLE IF NOT EXISTS window_counts
(
    camera_id      LowCardinality(String),
    window_start   DateTime('UTC'),
    window_seconds UInt32,
    line           LowCardinality(String),
    class_name     LowCardinality(String),
    direction      Enum8('in' = 1, 'out' = 2),
    variant        LowCardinality(String),
    experiment     LowCardinality(String),
    model_name     LowCardinality(String),
    model_version  LowCardinality(String),
    last_frame_seq Int64 DEFAULT -1,
    last_capture_ts_ms Int64 DEFAULT -1,
    count          UInt64,
    updated_ms     UInt64
)
ENGINE = ReplacingMergeTree(count)
PARTITION BY toYYYYMM(window_start)
ORDER BY (camera_id, window_start, window_seconds, line, class_name, direction, variant, experiment, model_name, model_version);
