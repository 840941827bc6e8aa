-- Crossings per camera, hour and object class: entered, exited and both together.
-- Parameters: start, end (UTC, 'YYYY-MM-DD hh:mm:ss'): the hours that begin in [start, end).
-- Merges the event-id sets of the hourly rollup, so a replayed or re-inserted event counts once.
SELECT
    hour,
    camera_id,
    class_name,
    uniqExactMergeIf(events, direction = 'in') AS entered,
    uniqExactMergeIf(events, direction = 'out') AS exited,
    uniqExactMerge(events) AS crossings
FROM crossings_hourly_state
WHERE hour >= toDateTime(%(start)s, 'UTC') AND hour < toDateTime(%(end)s, 'UTC')
GROUP BY hour, camera_id, class_name
ORDER BY hour, camera_id, class_name;
