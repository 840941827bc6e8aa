-- Per-minute crossing counts derived from the deduplicated events: the analysts' default entry point.
CREATE VIEW IF NOT EXISTS counts_per_minute AS
SELECT
    toStartOfMinute(capture_time) AS minute,
    camera_id,
    line,
    class_name,
    direction,
    variant,
    experiment,
    model_name,
    model_version,
    count() AS crossings
FROM crossing_events FINAL
GROUP BY minute, camera_id, line, class_name, direction, variant, experiment, model_name, model_version;
