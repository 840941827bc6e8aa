-- Hourly crossing rollup, replay-safe: each row holds the set of event_ids (uniqExact state) rather than a count,
-- so an event inserted twice (replay, retried insert) is one member of the set and merging states never
-- double-counts. The materialized view sees only inserts made after it exists; to backfill older events run
--   INSERT INTO crossings_hourly_state SELECT <the view's query> FROM crossing_events
-- which is harmless to repeat for the same reason.
CREATE TABLE IF NOT EXISTS crossings_hourly_state
(
    hour          DateTime('UTC'),
    camera_id     LowCardinality(String),
    line          LowCardinality(String),
    class_name    LowCardinality(String),
    direction     Enum8('in' = 1, 'out' = 2),
    variant       LowCardinality(String),
    experiment    LowCardinality(String),
    model_name    LowCardinality(String),
    model_version LowCardinality(String),
    events        AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (camera_id, hour, line, class_name, direction, variant, experiment, model_name, model_version);

CREATE MATERIALIZED VIEW IF NOT EXISTS crossings_hourly_mv TO crossings_hourly_state AS
SELECT
    toStartOfHour(capture_time) AS hour,
    camera_id,
    line,
    class_name,
    direction,
    variant,
    experiment,
    model_name,
    model_version,
    uniqExactState(event_id) AS events
FROM crossing_events
GROUP BY hour, camera_id, line, class_name, direction, variant, experiment, model_name, model_version;

CREATE VIEW IF NOT EXISTS crossings_hourly AS
SELECT
    hour,
    camera_id,
    line,
    class_name,
    direction,
    variant,
    experiment,
    model_name,
    model_version,
    uniqExactMerge(events) AS crossings
FROM crossings_hourly_state
GROUP BY hour, camera_id, line, class_name, direction, variant, experiment, model_name, model_version;

-- Days merge the hourly sets, so the daily count is as replay-safe as the hourly one.
CREATE VIEW IF NOT EXISTS crossings_daily AS
SELECT
    toStartOfDay(hour) AS day,
    camera_id,
    line,
    class_name,
    direction,
    variant,
    experiment,
    model_name,
    model_version,
    uniqExactMerge(events) AS crossings
FROM crossings_hourly_state
GROUP BY day, camera_id, line, class_name, direction, variant, experiment, model_name, model_version;
