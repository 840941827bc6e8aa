-- Per-minute zone occupancy from the counting app: one row per camera, zone, class and minute, re-emitted with
-- growing `frames` as the minute fills up. ReplacingMergeTree(frames) keeps the fullest emission of a minute, so
-- re-emits and replays never add up: query with FINAL.
-- Per minute: `frames` counted frames; `max_occupancy` and `occupancy_sum` over those frames (mean = sum / frames);
-- `entries` and `exits` of tracks into and out of the zone; `dwell_ms_sum` the summed dwell of the tracks that
-- exited (mean dwell = dwell_ms_sum / exits); `last_frame_seq` / `last_capture_ts_ms` the latest frame counted into
-- the row (-1 for rows written before zone-occupancy schema v2).
CREATE TABLE IF NOT EXISTS zone_occupancy
(
    camera_id     LowCardinality(String),
    zone          LowCardinality(String),
    class_name    LowCardinality(String),
    minute        DateTime('UTC'),
    frames        UInt32,
    max_occupancy UInt32,
    occupancy_sum UInt64,
    entries       UInt32,
    exits         UInt32,
    dwell_ms_sum  UInt64,
    model_name    LowCardinality(String),
    model_version LowCardinality(String),
    variant       LowCardinality(String),
    experiment    LowCardinality(String),
    last_frame_seq Int64 DEFAULT -1,
    last_capture_ts_ms Int64 DEFAULT -1,
    updated_ms    UInt64
)
ENGINE = ReplacingMergeTree(frames)
PARTITION BY toYYYYMM(minute)
ORDER BY (camera_id, zone, class_name, minute, variant, experiment, model_name, model_version);
