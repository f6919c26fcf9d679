-- 0016: the indicator catalogue as a reference table (controlroom/data/indicators.yaml), refreshed whole at every
-- `migrate` like the feeds: the Grafana boards derive an indicator from the aggregates with it, and analysts can
-- join it. `dim_key`/`dim_value`: the one dimension a derived indicator pins ('' when none).
CREATE TABLE IF NOT EXISTS {db}.indicators (
    id String,
    category String,
    name_vi String,
    name_en String,
    unit String,
    periodicity LowCardinality(String),
    aggregation LowCardinality(String),
    owner String,
    levels Array(String),
    source LowCardinality(String),
    feed String,
    dim_key String,
    dim_value String,
    numerator String,
    denominator String,
    scale Float64,
    report String
) ENGINE = MergeTree ORDER BY id;
