"""The API's request log: one ``api_requests`` row per answered request, written to ClickHouse in the background.

Invariant: logging a request never blocks it or fails it. ``record`` only appends to a bounded in-memory buffer
(O(1), thread-safe); a daemon thread writes what has gathered every ``flush_s`` seconds. When the buffer is full,
or ClickHouse is away (failed insert, or the breaker open), rows are dropped and counted through ``on_drop``,
never retried: the log is operational telemetry, and a retry after an unknown outcome could write rows twice
(the table's ReplacingMergeTree key makes such twins collapse anyway).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime

import pybreaker
from clickhouse_driver import Client

log = logging.getLogger(__name__)

TABLE = "api_requests"


@dataclass(frozen=True)
class RequestRow:
    """One answered request; the fields are the table's columns in order."""

    request_time: datetime
    request_ts_ms: int
    request_id: str
    method: str
    route: str
    status: int
    error_code: str
    error_detail: str
    latency_ms: float
    model_name: str
    model_version: str
    images: int
    cache_hits: int
    key_id: str
    client: str

    @staticmethod
    def time_of(ts_ms: int) -> datetime:
        return datetime.fromtimestamp(ts_ms // 1000, tz=UTC)


COLUMNS = tuple(f.name for f in fields(RequestRow))


class RequestLog:
    """Buffers request rows and writes them in batches from a background thread (see the module docstring)."""

    def __init__(self, connect: Callable[[], Client], breaker: pybreaker.CircuitBreaker, capacity: int,
                 flush_s: float, on_drop: Callable[[int, str], None] | None = None) -> None:
        self._connect = connect
        self._breaker = breaker
        self._rows: deque[RequestRow] = deque()
        self._capacity = capacity
        self._flush_s = flush_s
        self._on_drop = on_drop or (lambda count, reason: None)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Client | None = None
        self.written = 0

    def record(self, row: RequestRow) -> None:
        """Queue ``row`` for writing; drops it (and counts it) when the buffer is full."""
        with self._lock:
            if len(self._rows) >= self._capacity:
                full = True
            else:
                self._rows.append(row)
                full = False
        if full:
            self._on_drop(1, "buffer-full")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (one last try), then stop the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def flush(self) -> int:
        """Write every buffered row now; returns how many were written (0 when they were dropped)."""
        with self._lock:
            rows, self._rows = list(self._rows), deque()
        if not rows:
            return 0
        try:
            self._breaker.call(self._insert, rows)
        except Exception as exc:  # noqa: BLE001 - any failure drops the batch; see the module docstring
            reason = "breaker-open" if isinstance(exc, pybreaker.CircuitBreakerError) else "clickhouse-error"
            log.warning("dropped %d request-log rows (%s: %s)", len(rows), reason, " ".join(str(exc).split())[:200])
            self._on_drop(len(rows), reason)
            if self._client is not None:
                self._client.disconnect()
                self._client = None
            return 0
        self.written += len(rows)
        return len(rows)

    def _insert(self, rows: list[RequestRow]) -> None:
        if self._client is None:
            self._client = self._connect()
        self._client.execute(f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES", [astuple(r) for r in rows])

    def _run(self) -> None:
        while not self._stop.wait(self._flush_s):
            self.flush()
        self.flush()
