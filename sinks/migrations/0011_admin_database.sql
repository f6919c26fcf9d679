-- 0011: security and configuration tables move to a database of their own, {admin} ({db}_admin), which POST /query
-- never reads (api/readonly_sql.py allows only {db}) and the `analyst` ClickHouse user is never granted
-- (deploy/clickhouse/analyst.xml grants {db}.* only). api_keys holds key hashes, audit_log who changed what,
-- subscriptions webhook targets and e-mail addresses. RENAME across databases moves a table's data without a copy
-- (ClickHouse server and chDB alike); IF EXISTS makes a migration cut short safe to apply again. 0002, 0003 and 0009
-- now create (or move) them in {admin} directly, so nothing creates them in {db} any more: a new warehouse never
-- holds them where analysts read, and two migrations at once cannot re-create one behind a move.
-- (Numbered 0011: another branch uses 0010. Renumber at merge if needed.)

CREATE DATABASE IF NOT EXISTS {admin};

RENAME TABLE IF EXISTS {db}.api_keys TO {admin}.api_keys;

RENAME TABLE IF EXISTS {db}.audit_log TO {admin}.audit_log;

RENAME TABLE IF EXISTS {db}.subscriptions TO {admin}.subscriptions;

-- alert_deliveries: every notification attempt, with its target (a webhook URL, an e-mail address) and error text.
RENAME TABLE IF EXISTS {db}.alert_deliveries TO {admin}.alert_deliveries;

-- What analysts and Grafana's "Notification deliveries by status" panel may see of them: no target, no error, no
-- idempotency key. Filled by a materialized view (in {admin}, out of analysts' sight) as the sink writes; the same
-- key as alert_deliveries, so a block the sink writes twice is one row after a merge.
CREATE TABLE IF NOT EXISTS {db}.delivery_attempts (
    delivery_id String,
    alert_id String,
    seq UInt64,
    event LowCardinality(String),
    subscription_id String,
    channel LowCardinality(String),
    attempt UInt32,
    status LowCardinality(String),
    http_status UInt16,
    attempted_at DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    duration_ms Float64 CODEC(Gorilla, ZSTD(1))
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (alert_id, seq, subscription_id, attempt, delivery_id)
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {admin}.delivery_attempts_mv TO {db}.delivery_attempts AS
SELECT delivery_id, alert_id, seq, event, subscription_id, channel, attempt, status, http_status, attempted_at,
       duration_ms
FROM {admin}.alert_deliveries;

-- the attempts written before the view existed (applied again after a cut: only what is not there yet)
INSERT INTO {db}.delivery_attempts
SELECT delivery_id, alert_id, seq, event, subscription_id, channel, attempt, status, http_status, attempted_at,
       duration_ms
FROM {admin}.alert_deliveries
WHERE delivery_id NOT IN (SELECT delivery_id FROM {db}.delivery_attempts);
