-- 0015: the review of report revisions along the hierarchy (issue 16): a province's report is approved by the
-- province's operations center, then accepted by the national center; either may reject it with a comment,
-- which returns it to the submitter (a new revision starts again). The national figures (unit 00) are accepted
-- directly. One row per step, never updated: the review history stays visible.
CREATE TABLE IF NOT EXISTS {db}.report_reviews (
    form LowCardinality(String),
    period String,
    unit LowCardinality(String),
    revision UInt32,
    step LowCardinality(String),
    reviewed_by String,
    reviewed_at DateTime64(3, 'UTC'),
    comment String
) ENGINE = ReplacingMergeTree
ORDER BY (form, period, unit, revision, reviewed_at, step);
