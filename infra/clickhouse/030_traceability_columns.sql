-- Columns added after their table was first released, for databases created by an older release: the CREATE TABLE
-- statements above already hold them, so on a fresh database every statement here is skipped. ClickHouse 18.16 has
-- no ADD COLUMN IF NOT EXISTS: foundation.clickhouse.apply_clickhouse_ddl runs an `ALTER TABLE t ADD COLUMN c ...` only
-- when system.columns lacks t.c (one column per statement, unqualified names). Each column is added with the
-- type, default and position it has in its CREATE TABLE, so a migrated table ends up identical to a fresh one.

-- window-count and zone-occupancy schema v2: the frame a row traces to (-1: written before v2).
ALTER TABLE window_counts ADD COLUMN last_frame_seq Int64 DEFAULT -1 AFTER model_version;
ALTER TABLE window_counts ADD COLUMN last_capture_ts_ms Int64 DEFAULT -1 AFTER last_frame_seq;
ALTER TABLE zone_occupancy ADD COLUMN last_frame_seq Int64 DEFAULT -1 AFTER experiment;
ALTER TABLE zone_occupancy ADD COLUMN last_capture_ts_ms Int64 DEFAULT -1 AFTER last_frame_seq;

-- shadow-pair schema v2: both sides' model names ('': written before v2).
ALTER TABLE shadow_pairs ADD COLUMN control_model_name LowCardinality(String) DEFAULT '' AFTER candidate_variant;
ALTER TABLE shadow_pairs ADD COLUMN candidate_model_name LowCardinality(String) DEFAULT '' AFTER control_model_name;

-- detections schema v2: whether a fallback model served the frame (0: written before v2, or the reference served).
ALTER TABLE inference_log ADD COLUMN fallback UInt8 DEFAULT 0 AFTER e2e_ms;
