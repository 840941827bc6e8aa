-- One row per frame and model that inferred it: latency, detections and confidence for A/B analysis.
CREATE TABLE IF NOT EXISTS inference_log
(
    camera_id       LowCardinality(String),
    frame_seq       UInt64,
    capture_time    DateTime('UTC'),
    capture_ts_ms   UInt64,
    model_name      LowCardinality(String),
    model_version   LowCardinality(String),
    variant         LowCardinality(String),
    experiment      LowCardinality(String),
    status          Enum8('ok' = 1, 'skipped' = 2, 'error' = 3),
    detections      UInt32,
    mean_confidence Float32,
    infer_ms        Float32,
    e2e_ms          Float32,
    fallback        UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(capture_time)
ORDER BY (camera_id, frame_seq, model_name, model_version, variant);
