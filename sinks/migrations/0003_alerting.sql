-- 0003: alerting (issue 4). Every alert event (topic `alerts`) is a history row; alerts_current keeps the
-- latest event per alert (ReplacingMergeTree on seq: read it with FINAL). Rules, silences and
-- subscriptions are versioned rows written by the API (latest version wins; `deleted` marks the end).
-- Delivery attempts come from the notifier over topic `alerts.deliveries`.

CREATE TABLE IF NOT EXISTS {db}.alert_events (
    alert_id String,
    seq UInt64,
    fingerprint String,
    rule_id LowCardinality(String),
    rule_version UInt32,
    rule_type LowCardinality(String),
    severity LowCardinality(String),
    event LowCardinality(String),
    state LowCardinality(String),
    feed LowCardinality(String),
    province LowCardinality(String),
    dims Map(LowCardinality(String), String),
    dims_key String,
    summary_vi String,
    summary_en String,
    value Nullable(Float64),
    evidence String,
    starts_at DateTime64(3, 'UTC'),
    ends_at Nullable(DateTime64(3, 'UTC')),
    event_at DateTime64(3, 'UTC'),
    ack_by String,
    ack_comment String,
    silenced UInt8,
    link String,
    kafka_partition UInt32,
    kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_at)
ORDER BY (alert_id, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.alerts_current (
    alert_id String,
    seq UInt64,
    fingerprint String,
    rule_id LowCardinality(String),
    rule_version UInt32,
    rule_type LowCardinality(String),
    severity LowCardinality(String),
    event LowCardinality(String),
    state LowCardinality(String),
    feed LowCardinality(String),
    province LowCardinality(String),
    dims Map(LowCardinality(String), String),
    dims_key String,
    summary_vi String,
    summary_en String,
    value Nullable(Float64),
    evidence String,
    starts_at DateTime64(3, 'UTC'),
    ends_at Nullable(DateTime64(3, 'UTC')),
    event_at DateTime64(3, 'UTC'),
    ack_by String,
    ack_comment String,
    silenced UInt8,
    link String
) ENGINE = ReplacingMergeTree(seq)
ORDER BY alert_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.alerts_current_mv TO {db}.alerts_current AS
SELECT alert_id, seq, fingerprint, rule_id, rule_version, rule_type, severity, event, state, feed, province,
       dims, dims_key, summary_vi, summary_en, value, evidence, starts_at, ends_at, event_at, ack_by,
       ack_comment, silenced, link
FROM {db}.alert_events;

CREATE TABLE IF NOT EXISTS {db}.alert_rules (
    rule_id String,
    version UInt32,
    doc String,
    deleted UInt8,
    changed_at DateTime64(3, 'UTC'),
    changed_by String
) ENGINE = ReplacingMergeTree
ORDER BY (rule_id, version);

CREATE TABLE IF NOT EXISTS {db}.silences (
    silence_id String,
    version UInt64,
    matchers Map(String, String),
    starts_at DateTime64(3, 'UTC'),
    ends_at DateTime64(3, 'UTC'),
    comment String,
    created_by String,
    deleted UInt8
) ENGINE = ReplacingMergeTree(version)
ORDER BY silence_id;

-- in the admin database (see 0011): webhook targets and e-mail addresses
CREATE TABLE IF NOT EXISTS {admin}.subscriptions (
    subscription_id String,
    version UInt64,
    doc String,
    created_by String,
    deleted UInt8
) ENGINE = ReplacingMergeTree(version)
ORDER BY subscription_id;

-- in the admin database (see 0011): `target` is a webhook URL or an e-mail address
CREATE TABLE IF NOT EXISTS {admin}.alert_deliveries (
    delivery_id String,
    idempotency_key String,
    alert_id String,
    seq UInt64,
    event LowCardinality(String),
    subscription_id String,
    channel LowCardinality(String),
    target String,
    attempt UInt32,
    status LowCardinality(String),
    http_status UInt16,
    error String,
    attempted_at DateTime64(3, 'UTC'),
    duration_ms Float64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(attempted_at)
ORDER BY (alert_id, seq, subscription_id, attempt, delivery_id)
SETTINGS non_replicated_deduplication_window = 1000;
