"""Sinks: ClickHouse (the analysts' source of truth) and Redis (live state for dashboards)."""
