-- API keys of `camcount api` (sinks/api_keys.py). Only the SHA-256 of a key is stored, never the key itself.
-- A key is created with revoked = 0 and revoked by inserting its row again with revoked = 1 and a higher version;
-- ReplacingMergeTree(version) keeps the latest row of each key_id: read it with FINAL. Revocation is final.
-- version: milliseconds since the epoch when the row was written (a revocation's is always above its creation's).
-- revoked_at is 1970-01-01 00:00:00 and revoked_by '' while the key is valid.
CREATE TABLE IF NOT EXISTS api_keys
(
    key_id     String,
    name       String,
    role       LowCardinality(String),
    key_sha256 String,
    created_at DateTime('UTC'),
    created_by String,
    revoked    UInt8,
    revoked_at DateTime('UTC'),
    revoked_by String,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY key_id;
