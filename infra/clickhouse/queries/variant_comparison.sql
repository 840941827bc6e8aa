-- How the variants of one experiment compare, per variant and model version: inferred frames and errors,
-- inference and end-to-end latency (p50, p95, in ms, over frames inferred without error), detections per frame,
-- and crossings per camera-hour (camera-hours: the hours in which the variant inferred frames of a camera).
-- Skipped frames are left out. Latency quantiles are ClickHouse's `quantiles` (interpolated; sampled above 8192 frames).
-- Parameters: experiment: the experiment's name.
SELECT
    variant,
    model_name,
    model_version,
    frames,
    errors,
    infer_ms_q[1] AS infer_ms_p50,
    infer_ms_q[2] AS infer_ms_p95,
    e2e_ms_q[1] AS e2e_ms_p50,
    e2e_ms_q[2] AS e2e_ms_p95,
    detections_per_frame,
    camera_hours,
    crossings,
    crossings / camera_hours AS crossings_per_camera_hour
FROM
(
    SELECT
        variant,
        model_name,
        model_version,
        count() AS frames,
        countIf(status = 'error') AS errors,
        quantilesIf(0.5, 0.95)(infer_ms, status = 'ok') AS infer_ms_q,
        quantilesIf(0.5, 0.95)(e2e_ms, status = 'ok') AS e2e_ms_q,
        avgIf(detections, status = 'ok') AS detections_per_frame,
        uniqExact(camera_id, toStartOfHour(capture_time)) AS camera_hours
    FROM inference_log FINAL
    WHERE experiment = %(experiment)s AND status != 'skipped'
    GROUP BY variant, model_name, model_version
) AS inferred
ANY LEFT JOIN
(
    SELECT variant, model_name, model_version, count() AS crossings
    FROM crossing_events FINAL
    WHERE experiment = %(experiment)s
    GROUP BY variant, model_name, model_version
) AS counted USING (variant, model_name, model_version)
ORDER BY variant, model_name, model_version;
