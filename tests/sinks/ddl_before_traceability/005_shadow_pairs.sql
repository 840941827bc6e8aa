-- Paired comparisons from shadow mode: the same frame inferred by an experiment's control and its candidate.
-- Box agreement F1 = 2 * matched_boxes / (control_detections + candidate_detections).
CREATE TABLE IF NOT EXISTS shadow_pairs
(
    experiment              LowCardinality(String),
    camera_id               LowCardinality(String),
    frame_seq               UInt64,
    capture_time            DateTime('UTC'),
    capture_ts_ms           UInt64,
    control_variant         LowCardinality(String),
    candidate_variant       LowCardinality(String),
    control_model_version   LowCardinality(String),
    candidate_model_version LowCardinality(String),
    control_detections      UInt32,
    candidate_detections    UInt32,
    matched_boxes           UInt32,
    control_infer_ms        Float32,
    candidate_infer_ms      Float32
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(capture_time)
ORDER BY (experiment, camera_id, frame_seq);
