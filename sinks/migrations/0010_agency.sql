-- 0010: the agency that delivered each reading (issue 15), as a column of the raw readings and of every aggregate.
--
-- readings.agency   the body of the registry (controlroom/data/agencies.yaml) that sent it: the Kafka header
--                   `agency` (checked by schema.validate), or the /ingest key's agency (sent as that header).
-- agg_1m.agency     the sender of the window's last reading (argMax by event time, as `last`): a series
--                   (feed × province × dims) has one supplier, so agency is an attribute of the series, not part
--                   of its identity; a hand-over to another body shows as a change of this column, not a new series.
-- agg_1h/1d.agency  the same, by `last_ts`.
-- Rows stored before this migration were sent without the header: their agency is '' (unknown).
-- The rollup views are recreated with the column (DROP + CREATE: a materialized view cannot be altered); the
-- sink runs after `controlroom migrate`, so no insert into agg_1m falls between the two.

ALTER TABLE {db}.readings ADD COLUMN IF NOT EXISTS agency LowCardinality(String) DEFAULT '';

ALTER TABLE {db}.agg_1m ADD COLUMN IF NOT EXISTS agency LowCardinality(String) DEFAULT '';

ALTER TABLE {db}.agg_1h ADD COLUMN IF NOT EXISTS agency LowCardinality(String) DEFAULT '';

ALTER TABLE {db}.agg_1d ADD COLUMN IF NOT EXISTS agency LowCardinality(String) DEFAULT '';

CREATE OR REPLACE VIEW {db}.agg_1m_final AS
SELECT feed, province, dims, dims_key, source_partition, window_start, count, sum, min, max, last, last_ts, agency
FROM {db}.agg_1m FINAL;

CREATE OR REPLACE VIEW {db}.agg_1h_final AS
SELECT feed, province, dims, dims_key, bucket, windows, count, sum, min, max, last, last_ts, agency
FROM {db}.agg_1h FINAL;

DROP VIEW IF EXISTS {db}.agg_1h_mv;

DROP VIEW IF EXISTS {db}.agg_1d_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.agg_1h_mv TO {db}.agg_1h AS
SELECT feed, province, r.dims_any AS dims, dims_key, bucket, r.n_windows AS windows, r.n AS count, r.total AS sum,
       r.lo AS min, r.hi AS max, r.last_value AS last, r.last_at AS last_ts, now64(3, 'UTC') AS computed_at,
       r.last_agency AS agency
FROM (
    SELECT DISTINCT feed, province, dims_key, toDateTime(toStartOfHour(window_start), 'UTC') AS bucket
    FROM {db}.agg_1m
) AS touched
INNER JOIN (
    SELECT feed, province, dims_key, toDateTime(toStartOfHour(window_start), 'UTC') AS bucket, any(dims) AS dims_any,
           count() AS n_windows, sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi,
           argMax(last, (last_ts, last)) AS last_value, max(last_ts) AS last_at,
           argMax(agency, (last_ts, last)) AS last_agency
    FROM {db}.agg_1m_final
    WHERE (feed, province, dims_key, toStartOfHour(window_start)) IN (
        SELECT feed, province, dims_key, toStartOfHour(window_start) FROM {db}.agg_1m)
    GROUP BY feed, province, dims_key, bucket
) AS r USING (feed, province, dims_key, bucket);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.agg_1d_mv TO {db}.agg_1d AS
SELECT feed, province, r.dims_any AS dims, dims_key, day AS bucket, r.n_windows AS windows, r.n AS count,
       r.total AS sum, r.lo AS min, r.hi AS max, r.last_value AS last, r.last_at AS last_ts,
       now64(3, 'UTC') AS computed_at, r.last_agency AS agency
FROM (
    SELECT DISTINCT feed, province, dims_key, toDateTime(toStartOfDay(bucket), 'UTC') AS day
    FROM {db}.agg_1h
) AS touched
INNER JOIN (
    SELECT feed, province, dims_key, toDateTime(toStartOfDay(bucket), 'UTC') AS day, any(dims) AS dims_any,
           sum(windows) AS n_windows, sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi,
           argMax(last, (last_ts, last)) AS last_value, max(last_ts) AS last_at,
           argMax(agency, (last_ts, last)) AS last_agency
    FROM {db}.agg_1h_final
    WHERE (feed, province, dims_key, toStartOfDay(bucket)) IN (
        SELECT feed, province, dims_key, toStartOfDay(bucket) FROM {db}.agg_1h)
    GROUP BY feed, province, dims_key, day
) AS r USING (feed, province, dims_key, day);
