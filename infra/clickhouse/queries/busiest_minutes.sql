-- The busiest minutes: the `top` camera-minutes with the most crossings (all lines, classes and directions),
-- busiest first; ties go to the earlier minute.
-- Parameters: start, end (UTC, 'YYYY-MM-DD hh:mm:ss'): the minutes that begin in [start, end); top: rows to return.
SELECT
    minute,
    camera_id,
    sum(crossings) AS total,
    sumIf(crossings, direction = 'in') AS entered,
    sumIf(crossings, direction = 'out') AS exited
FROM counts_per_minute
WHERE minute >= toDateTime(%(start)s, 'UTC') AND minute < toDateTime(%(end)s, 'UTC')
GROUP BY minute, camera_id
ORDER BY total DESC, minute, camera_id
LIMIT %(top)s;
