-- 0004: hourly and daily rollups of agg_1m (issue 5), for the long ranges of the Grafana boards.
--
-- One row per (feed, province, dims_key, bucket): count, sum, min, max, last (value of the latest
-- reading, ties broken by the larger value), last_ts, and `windows`, the number of distinct 1-minute
-- partials (window_start, source_partition) the row summarizes. Buckets are UTC hours / UTC days.
--
-- Duplicates. agg_1m is a ReplacingMergeTree on the window identity (feed, province, dims_key,
-- window_start, source_partition): the same window can be inserted twice (a sink retried with other
-- batch bounds, or a window re-published after a worker crash; an exact re-insert with the same dedup
-- token is dropped by ClickHouse, but the others are not) and only FINAL (or a merge) collapses them.
-- An additive rollup (SummingMergeTree, sumState) fed by each inserted block would count such a window
-- twice, forever. So the rollups are built from deduplicated state: on every insert into agg_1m, the
-- view below takes the buckets the inserted block touches and recomputes each of them whole from
-- agg_1m FINAL (through the plain view agg_1m_final: inside a materialized view every mention of the
-- source table means the inserted block, a view reads the table itself, which already holds the block).
-- The recomputed row replaces the older ones of its bucket: ReplacingMergeTree(windows), so the row
-- that summarizes the most partials wins (a later recompute never sees fewer), and on a tie the last
-- inserted one (a re-published window with other values: the newest, as agg_1m FINAL keeps it).
-- A duplicate therefore rewrites its bucket with the same figures. The daily rollup is recomputed the
-- same way from agg_1h FINAL on every insert into agg_1h (at most 24 rows per series and day).
-- Readers use FINAL (or argMax by `windows`); the figures then equal agg_1m FINAL aggregated per bucket
-- (tests/integration/test_rollups.py). Cost: each insert reads back at most 60 partials per touched
-- series-hour and 24 hourly rows per touched series-day, both by primary key.
-- agg_1m is written by one sink per table, one batch at a time: two concurrent inserts into the same
-- series-hour could each miss the other's rows; the next insert of that hour (or the backfill below,
-- re-run) repairs it.
--
-- The backfills make the rollups complete for windows inserted before this migration; both are
-- idempotent (a recompute of a bucket), so a migration cut short is simply applied again.

CREATE TABLE IF NOT EXISTS {db}.agg_1h (
    feed LowCardinality(String),
    province LowCardinality(String),
    dims Map(LowCardinality(String), String),
    dims_key String,
    bucket DateTime('UTC'),
    windows UInt64,
    count UInt64,
    sum Float64,
    min Float64,
    max Float64,
    last Float64,
    last_ts DateTime64(3, 'UTC'),
    computed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(windows)
PARTITION BY toYYYYMM(bucket)
ORDER BY (feed, province, dims_key, bucket);

-- the same columns, engine and keys
CREATE TABLE IF NOT EXISTS {db}.agg_1d AS {db}.agg_1h;

CREATE VIEW IF NOT EXISTS {db}.agg_1m_final AS
SELECT feed, province, dims, dims_key, source_partition, window_start, count, sum, min, max, last, last_ts
FROM {db}.agg_1m FINAL;

CREATE VIEW IF NOT EXISTS {db}.agg_1h_final AS
SELECT feed, province, dims, dims_key, bucket, windows, count, sum, min, max, last, last_ts
FROM {db}.agg_1h FINAL;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.agg_1h_mv TO {db}.agg_1h AS
SELECT feed, province, r.dims_any AS dims, dims_key, bucket, r.n_windows AS windows, r.n AS count, r.total AS sum,
       r.lo AS min, r.hi AS max, r.last_value AS last, r.last_at AS last_ts, now64(3, 'UTC') AS computed_at
FROM (
    SELECT DISTINCT feed, province, dims_key, toDateTime(toStartOfHour(window_start), 'UTC') AS bucket
    FROM {db}.agg_1m
) AS touched
INNER JOIN (
    SELECT feed, province, dims_key, toDateTime(toStartOfHour(window_start), 'UTC') AS bucket, any(dims) AS dims_any,
           count() AS n_windows, sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi,
           argMax(last, (last_ts, last)) AS last_value, max(last_ts) AS last_at
    FROM {db}.agg_1m_final
    WHERE (feed, province, dims_key, toStartOfHour(window_start)) IN (
        SELECT feed, province, dims_key, toStartOfHour(window_start) FROM {db}.agg_1m)
    GROUP BY feed, province, dims_key, bucket
) AS r USING (feed, province, dims_key, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.agg_1d_mv TO {db}.agg_1d AS
SELECT feed, province, r.dims_any AS dims, dims_key, day AS bucket, r.n_windows AS windows, r.n AS count,
       r.total AS sum, r.lo AS min, r.hi AS max, r.last_value AS last, r.last_at AS last_ts,
       now64(3, 'UTC') AS computed_at
FROM (
    SELECT DISTINCT feed, province, dims_key, toDateTime(toStartOfDay(bucket), 'UTC') AS day
    FROM {db}.agg_1h
) AS touched
INNER JOIN (
    SELECT feed, province, dims_key, toDateTime(toStartOfDay(bucket), 'UTC') AS day, any(dims) AS dims_any,
           sum(windows) AS n_windows, sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi,
           argMax(last, (last_ts, last)) AS last_value, max(last_ts) AS last_at
    FROM {db}.agg_1h_final
    WHERE (feed, province, dims_key, toStartOfDay(bucket)) IN (
        SELECT feed, province, dims_key, toStartOfDay(bucket) FROM {db}.agg_1h)
    GROUP BY feed, province, dims_key, day
) AS r USING (feed, province, dims_key, day);

INSERT INTO {db}.agg_1h
SELECT feed, province, any(dims) AS dims_any, dims_key, toDateTime(toStartOfHour(window_start), 'UTC') AS bucket,
       count() AS n_windows, sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi,
       argMax(last, (last_ts, last)) AS last_value, max(last_ts) AS last_at, now64(3, 'UTC') AS computed_at
FROM {db}.agg_1m_final
GROUP BY feed, province, dims_key, bucket;

INSERT INTO {db}.agg_1d
SELECT feed, province, any(dims) AS dims_any, dims_key, toDateTime(toStartOfDay(bucket), 'UTC') AS day,
       sum(windows) AS n_windows, sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi,
       argMax(last, (last_ts, last)) AS last_value, max(last_ts) AS last_at, now64(3, 'UTC') AS computed_at
FROM {db}.agg_1h_final
GROUP BY feed, province, dims_key, day;
