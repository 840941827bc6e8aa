-- One row per HTTP request answered by `camcount api`: route, status, error code, latency, the model version that
-- served it and how many of its images came from the result cache. Written in batches by a background flush
-- (sinks/request_log.py); rows that cannot be written while ClickHouse is away are dropped and counted
-- (camcount_api_request_log_dropped_total), never retried into duplicates. request_id is unique per request, so
-- a re-inserted row replaces its twin: read with FINAL.
CREATE TABLE IF NOT EXISTS api_requests
(
    request_time  DateTime('UTC'),
    request_ts_ms UInt64,
    request_id    String,
    method        LowCardinality(String),
    route         LowCardinality(String),
    status        UInt16,
    error_code    LowCardinality(String),
    error_detail  LowCardinality(String),
    latency_ms    Float32,
    model_name    LowCardinality(String),
    model_version LowCardinality(String),
    images        UInt16,
    cache_hits    UInt16,
    key_id        String,
    client        String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(request_time)
ORDER BY (model_name, model_version, request_time, request_id);
