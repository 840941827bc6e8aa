-- The audit trail: one row per state-changing action (model promote/rollback/register, experiment start/stop,
-- API key create/revoke), from the CLI or the API, whether it succeeded or failed. camcount only ever inserts
-- here (sinks/audit.py); nothing in camcount updates or deletes a row.
-- event_id is a random UUID chosen once per action, before the insert, so an insert retried after a lost reply
-- writes the same row again and ReplacingMergeTree keeps one: read it with FINAL. No other rows share a key.
-- at / at_ms: when the action finished (UTC; at_ms for milliseconds, as 18.16 has no DateTime64).
-- actor: the OS user (or --actor NAME) for the CLI, the API key's name for the API; actor_id: the OS user who ran
-- the command (CLI, also when --actor names someone else) or the API key's id.
-- actor_kind: os-user | api-key. source: cli | api. client: host name (CLI) or client address (API).
-- result: ok | error, with error_code and error_message when it failed. reason: why, when the action takes one.
-- before / after: JSON of the state the action changed ('' where there is none), e.g. a model's alias map.
CREATE TABLE IF NOT EXISTS audit_log
(
    event_id      String,
    at            DateTime('UTC'),
    at_ms         UInt64,
    actor         String,
    actor_id      String,
    actor_kind    LowCardinality(String),
    source        LowCardinality(String),
    client        String,
    action        LowCardinality(String),
    target        String,
    result        LowCardinality(String),
    error_code    LowCardinality(String),
    error_message String,
    reason        String,
    before        String,
    after         String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (at, event_id);
