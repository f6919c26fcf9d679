-- 0001: raw readings, 1-minute aggregates, dead letters, late readings, reference tables.
-- ReplacingMergeTree on each row's identity: a batch delivered twice (after a crash) keeps one copy
-- once merged; readers use FINAL or aggregate by identity. non_replicated_deduplication_window
-- lets an identical re-sent insert (same dedup token) be dropped at once.

CREATE TABLE IF NOT EXISTS {db}.readings (
    event_id String,
    feed LowCardinality(String),
    province LowCardinality(String),
    province_original LowCardinality(String),
    ts DateTime64(3, 'UTC'),
    value Float64,
    dims Map(LowCardinality(String), String),
    dims_key String,
    source String,
    ingested_at DateTime64(3, 'UTC'),
    kafka_topic LowCardinality(String),
    kafka_partition UInt32,
    kafka_offset UInt64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (feed, province, dims_key, ts, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.agg_1m (
    feed LowCardinality(String),
    province LowCardinality(String),
    dims Map(LowCardinality(String), String),
    dims_key String,
    source_partition UInt32,
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    count UInt64,
    sum Float64,
    min Float64,
    max Float64,
    avg Float64,
    last Float64,
    last_ts DateTime64(3, 'UTC'),
    closed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(closed_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (feed, province, dims_key, window_start, source_partition)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.dead_letters (
    dlq_id String,
    reason LowCardinality(String),
    field String,
    detail String,
    payload String,
    feed LowCardinality(String),
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset Int64,
    received_at DateTime64(3, 'UTC'),
    kafka_offset UInt64
) ENGINE = ReplacingMergeTree
ORDER BY dlq_id
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.late_readings (
    event_id String,
    feed LowCardinality(String),
    province LowCardinality(String),
    dims Map(LowCardinality(String), String),
    dims_key String,
    ts DateTime64(3, 'UTC'),
    value Float64,
    watermark DateTime64(3, 'UTC'),
    source_topic LowCardinality(String),
    source_partition UInt32,
    source_offset Int64,
    detected_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree
ORDER BY (feed, province, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.categories (
    id String, name_vi String, name_en String
) ENGINE = MergeTree ORDER BY id;

CREATE TABLE IF NOT EXISTS {db}.feeds (
    id String, category String, name_vi String, name_en String, source String, unit String,
    kind LowCardinality(String), scope LowCardinality(String), cadence_s Float64,
    valid_min Float64, valid_max Float64, dims Map(String, Array(String))
) ENGINE = MergeTree ORDER BY id;

CREATE TABLE IF NOT EXISTS {db}.provinces (
    code String, name_vi String, name_en String, kind LowCardinality(String),
    lat Float64, lon Float64, legacy_codes Array(String)
) ENGINE = MergeTree ORDER BY code;
