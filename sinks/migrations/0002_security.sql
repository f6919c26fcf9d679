-- 0002: API keys (hashes only) and the audit log of every write. In the admin database (see 0011): first created
-- in {db}, moved by 0011 where that ran before; created there directly since, so analysts never see them.
CREATE DATABASE IF NOT EXISTS {admin};

CREATE TABLE IF NOT EXISTS {admin}.api_keys (
    key_id String,
    name String,
    role LowCardinality(String),
    agency LowCardinality(String),
    provinces Array(String),
    secret_hash String,
    created_at DateTime64(3, 'UTC'),
    created_by String,
    revoked_at Nullable(DateTime64(3, 'UTC')),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY key_id;

CREATE TABLE IF NOT EXISTS {admin}.audit_log (
    at DateTime64(3, 'UTC'),
    actor_key_id String,
    actor_name String,
    actor_role LowCardinality(String),
    action LowCardinality(String),
    target String,
    before String,
    after String,
    remote String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY at;
