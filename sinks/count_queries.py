"""Adapter: counts for dashboards (the API's ``/api/v1/counts/...`` and ``/api/v1/cameras``) from the replay-safe
ClickHouse objects analysts use (docs/analytics.md, infra/clickhouse/queries/):

- line crossings per ``hour`` or ``day``: the hourly rollup ``crossings_hourly_state``, merging its event-id sets
  (``uniqExactMerge``) as ``counts_per_camera_hour.sql`` and ``net_flow_per_line_hour.sql`` do; per ``minute``,
  for a range that does not start and end on whole UTC hours, and in a time zone whose UTC offset is not a whole
  number of hours in the range (e.g. Asia/Kolkata), the view ``counts_per_minute`` (over ``crossing_events FINAL``),
  grouped into local minutes, hours or days. Both give the same counts for the same minutes;
- zone occupancy: ``zone_occupancy FINAL`` with the formulas of ``zone_occupancy_per_hour.sql``.

A bucket holds the minutes (or UTC hours of the rollup) that begin in ``[start, end)``: buckets at the edges of the
range hold only the part inside it. Buckets are computed by ClickHouse in ``tz`` (``toStartOfHour(t, tz)``,
``toStartOfDay(t, tz)``) and returned as epoch seconds, so callers render them in ``tz`` without guessing.
Rows come in key order (bucket, camera, line or zone, class) and are paged by keyset: a page's cursor is the key of
its last row, so every row is returned exactly once however the pages are fetched.
All SQL here runs on ClickHouse 18.16 and on current versions.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from clickhouse_driver import Client

from foundation.errors import CamcountError

Run = Callable[[str, dict[str, Any]], list[tuple]]
"""Executes ``sql`` with ``params`` and returns the rows (:func:`runner` makes one for a client)."""
Interval = Literal["minute", "hour", "day"]
INTERVALS: tuple[str, ...] = ("minute", "hour", "day")
MAX_RANGE: dict[str, timedelta] = {"minute": timedelta(days=7), "hour": timedelta(days=93),
                                   "day": timedelta(days=3660)}
"""The longest range each interval may span (a minute-level query reads ``crossing_events FINAL``)."""
MAX_PAGE = 1000
EARLIEST = datetime(1970, 1, 2, tzinfo=UTC)
LATEST = datetime(2105, 12, 31, tzinfo=UTC)
"""The times a range may name: what ClickHouse's DateTime holds, with a day to spare at both ends."""


class InvalidCountsQuery(CamcountError, ValueError):
    """A counts query cannot be run as asked; the message names the parameter and what to send."""

    code = "INF_001"
    detail = "invalid-counts-query"


class InvalidTimeZone(InvalidCountsQuery):
    detail = "invalid-time-zone"


class InvalidTimeRange(InvalidCountsQuery):
    detail = "invalid-time-range"


def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (e.g. ``Europe/Paris``, ``UTC``); InvalidTimeZone for any other text."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise InvalidTimeZone(f"tz {name[:64]!r} is not an IANA time zone",
                              remedy="send a name such as UTC, Europe/Paris or America/New_York") from exc


@dataclass(frozen=True)
class CountsRange:
    """``[start, end)`` (aware datetimes), the bucket ``interval`` and the time zone buckets are cut and shown in."""

    start: datetime
    end: datetime
    tz: ZoneInfo
    interval: Interval

    @classmethod
    def parse(cls, start: str | None, end: str | None, tz: str, interval: str, now: datetime) -> CountsRange:
        """From the API's text: ISO-8601 ``start`` / ``end`` (a time without an offset is in ``tz``; default: the
        24 hours before ``now``). Raises InvalidCountsQuery naming the problem."""
        zone = time_zone(tz)
        if interval not in INTERVALS:
            raise InvalidCountsQuery(f"interval {interval[:32]!r} is not one of {', '.join(INTERVALS)}")
        until = _instant(end, zone, "to") if end else now
        since = _instant(start, zone, "from") if start else until - timedelta(days=1)
        if since >= until:
            raise InvalidTimeRange(f"from ({since.isoformat()}) must be before to ({until.isoformat()})")
        if until - since > MAX_RANGE[interval]:
            raise InvalidTimeRange(f"the range spans {until - since}, more than the {MAX_RANGE[interval].days} days "
                                   f"allowed with interval={interval}",
                                   remedy="use a longer interval or a shorter range")
        return cls(since, until, zone, interval)  # type: ignore[arg-type]

    def on_whole_utc_hours(self) -> bool:
        """Whether both ends fall on a whole UTC hour (then the range holds whole UTC hours of the rollup)."""
        return all(moment.timestamp() % 3600 == 0 for moment in (self.start, self.end))

    def whole_hour_offsets(self) -> bool:
        """Whether ``tz`` is a whole number of hours from UTC all through the range (sampled daily and at both ends:
        offsets change at most a few times a year), so each UTC hour of the rollup lies in one local hour and day."""
        moments = [self.start, self.end]
        moment = self.start
        while moment < self.end:
            moments.append(moment)
            moment += timedelta(days=1)
        return all((offset := moment.astimezone(self.tz).utcoffset()) is not None and not offset.total_seconds() % 3600
                   for moment in moments)

    def render(self, epoch_s: int) -> str:
        """A bucket's start as ISO-8601 in ``tz``, with its offset."""
        return datetime.fromtimestamp(epoch_s, self.tz).isoformat()


def _instant(text: str, zone: ZoneInfo, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError as exc:
        raise InvalidTimeRange(f"{name} {text[:64]!r} is not an ISO-8601 time",
                               remedy="send e.g. 2024-05-01T00:00:00Z or 2024-05-01T08:00:00+02:00") from exc
    moment = moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
    if not EARLIEST <= moment <= LATEST:
        raise InvalidTimeRange(f"{name} {text[:64]!r} is outside the times ClickHouse stores "
                               f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})")
    return moment


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, kinds: tuple[type, ...]) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not (isinstance(key, list) and len(key) == len(kinds)
                and all(isinstance(v, k) and not isinstance(v, bool) for v, k in zip(key, kinds, strict=True))):
            raise ValueError(key)
        return key
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCountsQuery(f"cursor {cursor[:64]!r} was not issued by this query's pages",
                                 remedy="pass the nextCursor of the previous page, or none for the first") from exc


@dataclass(frozen=True)
class Filters:
    camera: str | None = None
    name: str | None = None
    """A line (line counts) or a zone (zone counts)."""
    class_name: str | None = None


def _filters(filters: Filters, name_column: str, params: dict[str, Any]) -> str:
    where = []
    for column, value, key in (("camera_id", filters.camera, "camera"), (name_column, filters.name, "name"),
                               ("class_name", filters.class_name, "class_name")):
        if value is not None:
            where.append(f" AND {column} = %({key})s")
            params[key] = value
    return "".join(where)


def _bucket(expression: str, interval: str) -> str:
    if interval == "minute":
        return f"toUnixTimestamp(toStartOfMinute({expression}))"
    function = "toStartOfHour" if interval == "hour" else "toStartOfDay"
    return f"toUnixTimestamp({function}({expression}, %(tz)s))"


def _page(run: Run, inner: str, params: dict[str, Any], key_columns: str, key_kinds: tuple[type, ...],
          columns: tuple[str, ...], limit: int, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of ``inner``'s rows after ``cursor``, in ``key_columns`` order, and the next page's cursor."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidCountsQuery(f"limit {limit} is out of range: give 1 to {MAX_PAGE}")
    after = ""
    if cursor is not None:
        key = decode_cursor(cursor, key_kinds)
        params |= {f"k{i}": value for i, value in enumerate(key)}
        after = f"WHERE ({key_columns}) > ({', '.join(f'%(k{i})s' for i in range(len(key)))})"
    sql = f"SELECT * FROM ({inner}) {after} ORDER BY {key_columns} LIMIT {limit + 1}"
    rows = [dict(zip(columns, row, strict=True)) for row in run(sql, params)]
    more = len(rows) > limit
    rows = rows[:limit]
    names = [c.strip() for c in key_columns.split(",")]
    return rows, encode_cursor([rows[-1][n] for n in names]) if more else None


LINE_COLUMNS = ("bucket", "camera_id", "line", "class_name", "entered", "exited")


def line_counts(run: Run, window: CountsRange, filters: Filters,
                limit: int = 100, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Crossings per bucket, camera, line and class: ``entered`` (direction in) and ``exited`` (out).

    ``run(sql, params)`` executes a query. Hours and days come from the hourly rollup when ``tz`` allows it (see
    the module docstring), minutes from the ``counts_per_minute`` view.
    """
    params: dict[str, Any] = {"start": _utc_text(window.start), "end": _utc_text(window.end), "tz": window.tz.key}
    where = _filters(filters, "line", params)
    if window.interval != "minute" and window.on_whole_utc_hours() and window.whole_hour_offsets():
        inner = (f"SELECT {_bucket('hour', window.interval)} AS bucket, camera_id, line, class_name, "
                 "uniqExactMergeIf(events, direction = 'in') AS entered, "
                 "uniqExactMergeIf(events, direction = 'out') AS exited "
                 "FROM crossings_hourly_state "
                 f"WHERE hour >= toDateTime(%(start)s, 'UTC') AND hour < toDateTime(%(end)s, 'UTC'){where} "
                 "GROUP BY bucket, camera_id, line, class_name")
    else:
        inner = (f"SELECT {_bucket('minute', window.interval)} AS bucket, camera_id, line, class_name, "
                 "sumIf(crossings, direction = 'in') AS entered, sumIf(crossings, direction = 'out') AS exited "
                 "FROM counts_per_minute "
                 f"WHERE minute >= toDateTime(%(start)s, 'UTC') AND minute < toDateTime(%(end)s, 'UTC'){where} "
                 "GROUP BY bucket, camera_id, line, class_name")
    return _page(run, inner, params, "bucket, camera_id, line, class_name", (int, str, str, str), LINE_COLUMNS,
                 limit, cursor)


ZONE_COLUMNS = ("bucket", "camera_id", "zone", "class_name", "frames_counted", "avg_occupancy", "peak_occupancy",
                "entered", "exited", "mean_dwell_s")


def zone_counts(run: Run, window: CountsRange, filters: Filters,
                limit: int = 100, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Zone occupancy per bucket, camera, zone and class, with the formulas of ``zone_occupancy_per_hour.sql``:
    frames counted, mean and peak occupancy, entries, exits and mean dwell in seconds (None without exits)."""
    params: dict[str, Any] = {"start": _utc_text(window.start), "end": _utc_text(window.end), "tz": window.tz.key}
    where = _filters(filters, "zone", params)
    inner = (f"SELECT {_bucket('minute', window.interval)} AS bucket, camera_id, zone, class_name, "
             "sum(frames) AS frames_counted, sum(occupancy_sum) / frames_counted AS avg_occupancy, "
             "max(max_occupancy) AS peak_occupancy, sum(entries) AS entered, sum(exits) AS exited, "
             "sum(dwell_ms_sum) / nullIf(exited, 0) / 1000 AS mean_dwell_s "
             "FROM zone_occupancy FINAL "
             f"WHERE minute >= toDateTime(%(start)s, 'UTC') AND minute < toDateTime(%(end)s, 'UTC'){where} "
             "GROUP BY bucket, camera_id, zone, class_name")
    return _page(run, inner, params, "bucket, camera_id, zone, class_name", (int, str, str, str), ZONE_COLUMNS,
                 limit, cursor)


CAMERAS_SQL = """
SELECT camera_id, groupUniqArrayArray(lines) AS lines, groupUniqArrayArray(zones) AS zones,
       toUnixTimestamp(min(first)) AS first_seen, toUnixTimestamp(max(last)) AS last_seen
FROM
(
    SELECT camera_id, groupUniqArray(line) AS lines, emptyArrayString() AS zones, min(hour) AS first,
           max(hour) AS last
    FROM crossings_hourly_state GROUP BY camera_id
    UNION ALL
    SELECT camera_id, emptyArrayString() AS lines, groupUniqArray(zone) AS zones, min(minute) AS first,
           max(minute) AS last
    FROM zone_occupancy GROUP BY camera_id
)
WHERE camera_id > %(after)s
GROUP BY camera_id
ORDER BY camera_id
LIMIT %(limit)s
"""
"""Cameras that have counts in ClickHouse: the lines and zones counted, the first and last hour / minute with any.
(Reading without FINAL is right here: duplicates change neither the sets nor min/max.)"""


def counted_cameras(run: Run, after: str = "",
                    limit: int = MAX_PAGE) -> list[dict[str, Any]]:
    """Up to ``limit`` cameras with counts, by camera id, from the first id after ``after``."""
    rows = run(CAMERAS_SQL, {"after": after, "limit": limit})
    return [{"camera_id": camera, "lines": sorted(lines), "zones": sorted(zones), "first_seen": first,
             "last_seen": last} for camera, lines, zones, first, last in rows]


def runner(client: Client) -> Run:
    """``run`` for the functions above on a clickhouse-driver client."""
    return lambda sql, params: client.execute(sql, params)
