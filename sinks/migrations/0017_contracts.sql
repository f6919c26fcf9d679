-- 0017: feed contracts and the agencies' quality score (issue 15).
--
-- dead_letters.agency, late_readings.agency  who sent the rejected / late reading (its header `agency`, the /ingest
--                   key's agency); '' for rows stored before, and for a message without the header.
-- contracts, contract_series  reference tables, the contracts of controlroom/data/agencies.yaml (controlroom/contracts.py),
--                   replaced whole at every start like feeds and provinces (sinks/migrate.py).
-- received_hours    the hours Control Room was receiving, and for how many minutes (the most 1-minute windows of any
--                   series in the hour): an hour it was down is nobody's fault, and the current hour is judged pro rata.
-- contract_hourly   per contract (agency × feed) × received hour, the four measures (0–1, NULL when not judged):
--   completeness  series of the contract that reported in the hour / series it must cover (judged once the hour
--                 has been received for two cadences)
--   timeliness    1 − late readings / readings received (late: after their window closed)
--   validity      readings received / (received + dead-lettered)
--   volume        1 inside the band (readings per hour × minutes received / 60); below: readings / min; above:
--                 max / readings (judged like completeness)
--   quality       100 × weighted mean of the judged measures: completeness 0.4, the others 0.2 each, timeliness
--                 counted met (1) at or above the promised share (controlroom/contracts.py, WEIGHTS, hour_quality)
-- agency_scores_daily  per agency and day (Vietnam time, UTC+7): the mean quality of its contract-hours, the score.
-- `province`: a provincial center's province, '' for a central body: a province-scoped key's views (api/scope.py)
--                   show its own center's contracts and score, not the national bodies' (their figures span provinces).
-- Readings and late readings count in the hour of their event time; dead letters in the hour they were received.

ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS agency LowCardinality(String) DEFAULT '';

ALTER TABLE {db}.late_readings ADD COLUMN IF NOT EXISTS agency LowCardinality(String) DEFAULT '';

CREATE TABLE IF NOT EXISTS {db}.contracts (
    agency String, province String, feed String, cadence_s Float64, series UInt32, per_hour_min Float64, per_hour_max Float64,
    timeliness_pct Float64
) ENGINE = MergeTree ORDER BY (agency, feed);

CREATE TABLE IF NOT EXISTS {db}.contract_series (
    agency String, feed String, province String, dims_key String
) ENGINE = MergeTree ORDER BY (feed, province, dims_key);

CREATE OR REPLACE VIEW {db}.received_hours AS
SELECT bucket AS hour, toFloat64(least(60, max(windows))) AS minutes
FROM {db}.agg_1h_final
GROUP BY bucket;

CREATE OR REPLACE VIEW {db}.contract_hourly AS
SELECT agency, province, feed, hour, minutes, series, reported, readings, late, too_late, dead, band_min, band_max,
       timeliness_pct, completeness, timeliness, validity, volume,
       -- least() is spelt out as if(): least(1, NULL) is 1, not NULL, in some ClickHouse versions
       100 * (0.4 * ifNull(completeness, 0) + 0.2 * if(timeliness IS NULL, 0,
                                                       if(timeliness * 100 >= timeliness_pct, 1,
                                                          timeliness * 100 / timeliness_pct))
              + 0.2 * ifNull(validity, 0) + 0.2 * ifNull(volume, 0))
           / nullIf(0.4 * (completeness IS NOT NULL) + 0.2 * (timeliness IS NOT NULL) + 0.2 * (validity IS NOT NULL)
                    + 0.2 * (volume IS NOT NULL), 0) AS quality
FROM (
    SELECT c.agency AS agency, c.province AS province, c.feed AS feed, h.hour AS hour, h.minutes AS minutes, c.series AS series,
           g.reported AS reported, g.readings AS readings, l.late AS late, l.too_late AS too_late, d.dead AS dead,
           c.per_hour_min * h.minutes / 60 AS band_min, c.per_hour_max * h.minutes / 60 AS band_max,
           c.timeliness_pct AS timeliness_pct, h.minutes * 60 >= 2 * c.cadence_s AS judged,
           if(judged, g.reported / c.series, NULL) AS completeness,
           if(g.readings + l.too_late > 0, 1 - l.late / (g.readings + l.too_late), NULL) AS timeliness,
           if(g.readings + l.too_late + d.dead > 0,
              (g.readings + l.too_late) / (g.readings + l.too_late + d.dead), NULL) AS validity,
           if(NOT judged, NULL, if(g.readings >= band_min AND g.readings <= band_max, 1,
              if(g.readings < band_min, g.readings / band_min, band_max / g.readings))) AS volume
    FROM {db}.contracts AS c
    CROSS JOIN {db}.received_hours AS h
    LEFT JOIN (
        SELECT s.agency AS agency, s.feed AS feed, a.bucket AS hour, count() AS reported, sum(a.count) AS readings
        FROM {db}.agg_1h_final AS a
        INNER JOIN {db}.contract_series AS s ON a.feed = s.feed AND a.province = s.province AND a.dims_key = s.dims_key
        WHERE a.count > 0
        GROUP BY agency, feed, hour
    ) AS g ON g.agency = c.agency AND g.feed = c.feed AND g.hour = h.hour
    LEFT JOIN (
        SELECT agency, feed, toStartOfHour(ts) AS hour, count() AS late, countIf(status = 'too_late') AS too_late
        FROM {db}.late_readings FINAL
        GROUP BY agency, feed, hour
    ) AS l ON l.agency = c.agency AND l.feed = c.feed AND l.hour = h.hour
    LEFT JOIN (
        SELECT agency, feed, toStartOfHour(received_at) AS hour, count() AS dead
        FROM {db}.dead_letters FINAL
        GROUP BY agency, feed, hour
    ) AS d ON d.agency = c.agency AND d.feed = c.feed AND d.hour = h.hour
);

CREATE OR REPLACE VIEW {db}.agency_scores_daily AS
SELECT agency, any(province) AS province, toDate(hour, 'Asia/Ho_Chi_Minh') AS day, avg(quality) AS score, count() AS contract_hours,
       avg(completeness) AS completeness, avg(timeliness) AS timeliness, avg(validity) AS validity,
       avg(volume) AS volume, argMin(feed, quality) AS worst_feed, min(quality) AS worst_quality
FROM {db}.contract_hourly
WHERE quality IS NOT NULL
GROUP BY agency, day;
