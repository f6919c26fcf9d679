-- 0005: what /overview reads (issue 6), so it no longer scans `readings` (ordered by series first) by ts.
-- Measured with 10M readings (bench/api_bench.py): the scan of `readings` grows with the history; a
-- "recent" table ordered by ts alone still aggregates the whole 15-minute lookback per request, which
-- dominates once the live traffic is dense. So /overview reads two small tables, both fed by materialized
-- views from `readings`, both exact after a sink retry or a replay:
--   readings_latest  one row per series once merged: max(ts) and argMax(value, (ts, event_id)). Both are
--                    idempotent, so a reading inserted twice (a retry, a replay with other batch bounds,
--                    a duplicate inside a batch) changes nothing; read with GROUP BY + -Merge.
--   readings_recent  the readings of the last day, narrow and ordered by ts, for the 5-minute figures;
--                    count and sum are not idempotent, so the reader deduplicates by event_id as before.
-- Backfills below are idempotent: a migration cut short is applied again and adds nothing twice
-- (readings_latest: max/argMax of the same rows; readings_recent: only event_ids it does not hold).

CREATE TABLE IF NOT EXISTS {db}.readings_latest (
    feed LowCardinality(String),
    province LowCardinality(String),
    dims_key String,
    last_ts SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    last_value AggregateFunction(argMax, Float64, Tuple(DateTime64(3, 'UTC'), String))
) ENGINE = AggregatingMergeTree
ORDER BY (feed, province, dims_key);

CREATE TABLE IF NOT EXISTS {db}.readings_recent (
    event_id String,
    feed LowCardinality(String),
    province LowCardinality(String),
    dims_key String,
    ts DateTime64(3, 'UTC'),
    value Float64
) ENGINE = MergeTree
PARTITION BY toYYYYMMDD(ts)
ORDER BY ts
TTL toDateTime(ts) + INTERVAL 1 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_latest_mv TO {db}.readings_latest AS
SELECT feed, province, dims_key, max(ts) AS last_ts, argMaxState(value, (ts, event_id)) AS last_value
FROM {db}.readings
GROUP BY feed, province, dims_key;

-- only readings of the last day: a replay of old history does not fill the recent table
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.readings_recent_mv TO {db}.readings_recent AS
SELECT event_id, feed, province, dims_key, ts, value
FROM {db}.readings
WHERE ts >= now64(3, 'UTC') - INTERVAL 1 DAY;

INSERT INTO {db}.readings_latest
SELECT feed, province, dims_key, max(ts) AS last_ts, argMaxState(value, (ts, event_id)) AS last_value
FROM {db}.readings
GROUP BY feed, province, dims_key;

INSERT INTO {db}.readings_recent
SELECT event_id, feed, province, dims_key, ts, value
FROM {db}.readings
WHERE ts >= now64(3, 'UTC') - INTERVAL 1 DAY
  AND event_id NOT IN (SELECT event_id FROM {db}.readings_recent WHERE ts >= now64(3, 'UTC') - INTERVAL 1 DAY);
