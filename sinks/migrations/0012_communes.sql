-- 0012: the commune or ward a reading names (dims.commune of a feed with `communes: true`; '' when none), the
-- statistics office's five-digit code from the vietnam-provinces library. A column of readings only, not of the
-- series identity (dims_key) nor of agg_1m: a series per commune would multiply the series by up to 3,321 communes
-- (README, "Communes"). The province page counts per commune from readings (ORDER BY feed, province, … first).

ALTER TABLE {db}.readings ADD COLUMN IF NOT EXISTS commune LowCardinality(String) DEFAULT '';

-- the library's communes as a reference table (refreshed from the catalog at every start, like provinces), so
-- SQL (Grafana's province board, /query) can name them; and which feeds carry a commune
CREATE TABLE IF NOT EXISTS {db}.communes (
    code String, name String, province LowCardinality(String), kind LowCardinality(String)
) ENGINE = MergeTree ORDER BY (province, code);

ALTER TABLE {db}.feeds ADD COLUMN IF NOT EXISTS communes UInt8 DEFAULT 0;
