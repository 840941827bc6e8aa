"""Sinks: ClickHouse (the analysts' source of truth, experiment samples) and Redis (live state for dashboards,
experiment state)."""
