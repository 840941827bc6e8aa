-- The detector's outputs box by box (issue 14, live model monitoring): per-box columns of inference_log, hourly
-- aggregates of them per camera x model version x variant (x class), and the box signals' means in drift_windows.

-- detections records, box by box (the sink's inference_row): the class name of each kept box (the model's
-- class_names[class_id], or the id as text when the record has no names), its confidence, and its area over the
-- frame's area (width x height). Empty in rows written before these columns existed, and in frames without boxes:
-- a frame has per-box data when length(box_classes) = detections. `camcount monitor` reads them for the box_area and
-- class_mix drift signals (sinks/drift_store.py), from inference_log FINAL, so replays count once there.
-- Plain String, not LowCardinality: LowCardinality inside Array needs a newer server than 18.16.
ALTER TABLE inference_log ADD COLUMN box_classes Array(String) AFTER fallback;
ALTER TABLE inference_log ADD COLUMN box_confidences Array(Float32) AFTER box_classes;
ALTER TABLE inference_log ADD COLUMN box_area_ratios Array(Float32) AFTER box_confidences;

-- Hourly output distribution, in two state tables fed by materialized views on inserts into inference_log:
--   outputs_frames_hourly_state  hour x camera x model name x model version x variant, per frame inferred ok: frames,
--                                boxes (every class) and a quantiles state of boxes per frame;
--   outputs_hourly_state         the same keys x class_name, per box: boxes, and quantiles states of the boxes'
--                                confidence and area ratio.
-- The states merge across hours, cameras and classes: quantilesTDigestMerge(0.05, 0.25, 0.5, 0.75, 0.95)
-- (confidence_state) over every class of a camera-hour gives the quantiles of all its boxes. The views
-- outputs_hourly and outputs_frames_hourly merge them per key.
--
-- APPROXIMATE UNDER REPLAYS, by choice. The views read inference_log inserts, and inference_log is a
-- ReplacingMergeTree: a replayed or retried detections record is inserted again and is only deduplicated when its
-- parts merge (or under FINAL), but a materialized view has already added it to these states. A replay-safe state
-- (a set of frame or box ids, as crossings_hourly_state keeps for crossings) would cost 8-16 bytes per box per
-- hour, about 5 MB per camera-hour at 10 frames/s of ten boxes, against a few KB for these sums and t-digests; and
-- quantiles of a distribution in which a replayed stretch counts twice move far less than a count does. So a
-- replay inflates frames and boxes of the hours it covers (their ratio, boxes per frame, and the quantiles stay
-- close), and the exact figures are in inference_log FINAL. Drift detection reads inference_log FINAL, never these
-- tables. Backfill, as for crossings_hourly_state, by running a view's SELECT as INSERT INTO <its state table>
-- SELECT ... FROM inference_log (unlike there, running it twice counts twice).
CREATE TABLE IF NOT EXISTS outputs_frames_hourly_state
(
    hour             DateTime('UTC'),
    camera_id        LowCardinality(String),
    model_name       LowCardinality(String),
    model_version    LowCardinality(String),
    variant          LowCardinality(String),
    frames_state     AggregateFunction(sum, UInt64),
    boxes_state      AggregateFunction(sum, UInt64),
    detections_state AggregateFunction(quantilesTDigest(0.05, 0.25, 0.5, 0.75, 0.95), Float32)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (camera_id, hour, model_name, model_version, variant);

CREATE MATERIALIZED VIEW IF NOT EXISTS outputs_frames_hourly_mv TO outputs_frames_hourly_state AS
SELECT
    toStartOfHour(capture_time) AS hour,
    camera_id,
    model_name,
    model_version,
    variant,
    sumState(toUInt64(1)) AS frames_state,
    sumState(toUInt64(detections)) AS boxes_state,
    quantilesTDigestState(0.05, 0.25, 0.5, 0.75, 0.95)(toFloat32(detections)) AS detections_state
FROM inference_log
WHERE status = 'ok'
GROUP BY hour, camera_id, model_name, model_version, variant;

-- class_name is a plain String: 18.16 does not convert a String into LowCardinality when a view pushes rows.
CREATE TABLE IF NOT EXISTS outputs_hourly_state
(
    hour             DateTime('UTC'),
    camera_id        LowCardinality(String),
    model_name       LowCardinality(String),
    model_version    LowCardinality(String),
    variant          LowCardinality(String),
    class_name       String,
    boxes_state      AggregateFunction(sum, UInt64),
    confidence_state AggregateFunction(quantilesTDigest(0.05, 0.25, 0.5, 0.75, 0.95), Float32),
    area_ratio_state AggregateFunction(quantilesTDigest(0.05, 0.25, 0.5, 0.75, 0.95), Float32)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (camera_id, hour, model_name, model_version, variant, class_name);

CREATE MATERIALIZED VIEW IF NOT EXISTS outputs_hourly_mv TO outputs_hourly_state AS
SELECT
    toStartOfHour(capture_time) AS hour,
    camera_id,
    model_name,
    model_version,
    variant,
    box_class AS class_name,
    sumState(toUInt64(1)) AS boxes_state,
    quantilesTDigestState(0.05, 0.25, 0.5, 0.75, 0.95)(box_confidence) AS confidence_state,
    quantilesTDigestState(0.05, 0.25, 0.5, 0.75, 0.95)(box_area_ratio) AS area_ratio_state
FROM inference_log
ARRAY JOIN box_classes AS box_class, box_confidences AS box_confidence, box_area_ratios AS box_area_ratio
WHERE status = 'ok'
GROUP BY hour, camera_id, model_name, model_version, variant, class_name;

-- One row per hour x camera x model version x variant with frames: frames, boxes (every class), mean boxes per frame
-- and the 5/25/50/75/95 % quantiles of boxes per frame (an array, in that order). Approximate under replays.
CREATE VIEW IF NOT EXISTS outputs_frames_hourly AS
SELECT
    hour,
    camera_id,
    model_name,
    model_version,
    variant,
    sumMerge(frames_state) AS frames,
    sumMerge(boxes_state) AS boxes,
    if(frames > 0, boxes / frames, 0) AS boxes_per_frame,
    quantilesTDigestMerge(0.05, 0.25, 0.5, 0.75, 0.95)(detections_state) AS detections_quantiles
FROM outputs_frames_hourly_state
GROUP BY hour, camera_id, model_name, model_version, variant;

-- One row per hour x camera x model version x variant x class that had boxes: boxes, the frames inferred in that
-- hour (every frame, with or without a box of the class), boxes_per_frame = boxes / frames, and the 5/25/50/75/95 %
-- quantiles of the boxes' confidence and area ratio (arrays, in that order). Approximate under replays.
CREATE VIEW IF NOT EXISTS outputs_hourly AS
SELECT
    hour,
    camera_id,
    model_name,
    model_version,
    variant,
    class_name,
    frames,
    boxes,
    if(frames > 0, boxes / frames, 0) AS boxes_per_frame,
    confidence_quantiles,
    area_ratio_quantiles
FROM
(
    SELECT
        hour,
        camera_id,
        model_name,
        model_version,
        variant,
        class_name,
        sumMerge(boxes_state) AS boxes,
        quantilesTDigestMerge(0.05, 0.25, 0.5, 0.75, 0.95)(confidence_state) AS confidence_quantiles,
        quantilesTDigestMerge(0.05, 0.25, 0.5, 0.75, 0.95)(area_ratio_state) AS area_ratio_quantiles
    FROM outputs_hourly_state
    GROUP BY hour, camera_id, model_name, model_version, variant, class_name
) AS per_class
ANY LEFT JOIN
(
    SELECT
        hour,
        camera_id,
        model_name,
        model_version,
        variant,
        sumMerge(frames_state) AS frames
    FROM outputs_frames_hourly_state
    GROUP BY hour, camera_id, model_name, model_version, variant
) AS per_frame
USING (hour, camera_id, model_name, model_version, variant);

-- The box signals of `camcount monitor` (monitoring/drift.py): drift_scores rows gain signal box_area (log10 of each
-- box's area ratio; psi | jensen_shannon | wasserstein) and class_mix (class shares; psi | jensen_shannon only), and
-- drift_windows.cause gains smaller-boxes | larger-boxes | class-mix. drift_windows gains the box signals' means:
-- the geometric mean box area ratio of the window and of its reference (10 ^ mean log10 area ratio; 0 without
-- per-box data), the reference's most common class ('' without per-box data) and its share among the window's and
-- the reference's boxes.
ALTER TABLE drift_windows ADD COLUMN mean_box_area Float32 DEFAULT 0 AFTER reference_mean_confidence;
ALTER TABLE drift_windows ADD COLUMN reference_mean_box_area Float32 DEFAULT 0 AFTER mean_box_area;
ALTER TABLE drift_windows ADD COLUMN dominant_class LowCardinality(String) DEFAULT '' AFTER reference_mean_box_area;
ALTER TABLE drift_windows ADD COLUMN class_share Float32 DEFAULT 0 AFTER dominant_class;
ALTER TABLE drift_windows ADD COLUMN reference_class_share Float32 DEFAULT 0 AFTER class_share;
