-- Zone occupancy per camera, zone, object class and hour: mean and peak number of objects in the zone over the
-- counted frames, entries and exits, and the mean dwell in seconds of the objects that left (NULL without exits).
-- Parameters: start, end (UTC, 'YYYY-MM-DD hh:mm:ss'): the minutes in [start, end), grouped by hour.
SELECT
    toStartOfHour(minute) AS hour,
    camera_id,
    zone,
    class_name,
    sum(frames) AS frames_counted,
    sum(occupancy_sum) / frames_counted AS avg_occupancy,
    max(max_occupancy) AS peak_occupancy,
    sum(entries) AS entered,
    sum(exits) AS exited,
    sum(dwell_ms_sum) / nullIf(exited, 0) / 1000 AS mean_dwell_s
FROM zone_occupancy FINAL
WHERE minute >= toDateTime(%(start)s, 'UTC') AND minute < toDateTime(%(end)s, 'UTC')
GROUP BY hour, camera_id, zone, class_name
ORDER BY hour, camera_id, zone, class_name;
