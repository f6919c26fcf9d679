-- 0007: incidents (issue 13). Every incident event (topic `incidents`) is a timeline row; incidents_current keeps
-- the latest event of each incident (ReplacingMergeTree on seq: read it with FINAL); every event carries the
-- whole state (members as JSON, their alert ids, the signals firing, ack, assignee). Alert notes (topic
-- `alerts.notes`: an assignee, a comment) are rows keyed by their content hash, so a replay stores them once.
-- (Numbered 0007 on branch `incidents`: renumber at merge if another 0007 lands first.)

CREATE TABLE IF NOT EXISTS {db}.incident_events (
    incident_id String,
    seq UInt64,
    type LowCardinality(String),
    type_version UInt32,
    scope LowCardinality(String),
    province LowCardinality(String),
    severity LowCardinality(String),
    event LowCardinality(String),
    state LowCardinality(String),
    title_vi String,
    title_en String,
    alert_id String,
    signal LowCardinality(String),
    by String,
    comment String,
    assignee String,
    ack_by String,
    ack_comment String,
    signals Array(String),
    members String,
    alert_ids Array(String),
    opened_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    event_at DateTime64(3, 'UTC'),
    kafka_partition UInt32,
    kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(opened_at)
ORDER BY (incident_id, seq)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.incidents_current (
    incident_id String,
    seq UInt64,
    type LowCardinality(String),
    type_version UInt32,
    scope LowCardinality(String),
    province LowCardinality(String),
    severity LowCardinality(String),
    event LowCardinality(String),
    state LowCardinality(String),
    title_vi String,
    title_en String,
    assignee String,
    ack_by String,
    ack_comment String,
    signals Array(String),
    members String,
    alert_ids Array(String),
    opened_at DateTime64(3, 'UTC'),
    resolved_at Nullable(DateTime64(3, 'UTC')),
    event_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(seq)
ORDER BY incident_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.incidents_current_mv TO {db}.incidents_current AS
SELECT incident_id, seq, type, type_version, scope, province, severity, event, state, title_vi, title_en, assignee,
       ack_by, ack_comment, signals, members, alert_ids, opened_at, resolved_at, event_at
FROM {db}.incident_events;

CREATE TABLE IF NOT EXISTS {db}.alert_notes (
    note_id String,
    alert_id String,
    kind LowCardinality(String),
    by String,
    at DateTime64(3, 'UTC'),
    assignee String,
    comment String
) ENGINE = ReplacingMergeTree
ORDER BY (alert_id, at, note_id);
