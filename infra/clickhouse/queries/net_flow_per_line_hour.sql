-- Net flow per counting line and hour: entered minus exited, and a running occupancy estimate (the net flow
-- summed from `start`, which is taken as empty). The estimate only means something for a line that closes off
-- an area (a door, a gate) with 'in' pointing into it, and it drifts with every missed crossing.
-- Hours without crossings of `class_name` are left out.
-- Parameters: start, end (UTC, 'YYYY-MM-DD hh:mm:ss'): the hours that begin in [start, end);
-- class_name: the object class to follow, e.g. 'person'.
-- No window functions on ClickHouse 18.16: each line's hours are collected into a sorted array, summed
-- cumulatively and unfolded again with ARRAY JOIN.
SELECT camera_id, line, hour, entered, exited, net, occupancy
FROM
(
    SELECT
        camera_id,
        line,
        arraySort(groupArray((hour, entered, exited))) AS hours,
        arrayMap(h -> toInt64(tupleElement(h, 2)) - toInt64(tupleElement(h, 3)), hours) AS nets
    FROM
    (
        SELECT
            camera_id,
            line,
            hour,
            uniqExactMergeIf(events, direction = 'in') AS entered,
            uniqExactMergeIf(events, direction = 'out') AS exited
        FROM crossings_hourly_state
        WHERE class_name = %(class_name)s
          AND hour >= toDateTime(%(start)s, 'UTC') AND hour < toDateTime(%(end)s, 'UTC')
        GROUP BY camera_id, line, hour
    )
    GROUP BY camera_id, line
)
ARRAY JOIN
    arrayMap(h -> tupleElement(h, 1), hours) AS hour,
    arrayMap(h -> tupleElement(h, 2), hours) AS entered,
    arrayMap(h -> tupleElement(h, 3), hours) AS exited,
    nets AS net,
    arrayCumSum(nets) AS occupancy
ORDER BY camera_id, line, hour;
