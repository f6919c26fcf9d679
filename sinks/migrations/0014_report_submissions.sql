-- 0014: report submissions (issue 16, the reporting regimes). Every revision of every report is a row of its
-- own: a correction adds a revision, nothing is overwritten, so every earlier figure stays visible. `status` is
-- draft (saved, not submitted: incomplete or breaking a rule) or submitted; `on_time` compares the submission
-- with the form's deadline. ReplacingMergeTree only folds a retried insert of the same revision.
CREATE TABLE IF NOT EXISTS {db}.report_submissions (
    form LowCardinality(String),
    period String,
    unit LowCardinality(String),
    revision UInt32,
    status LowCardinality(String),
    values Map(String, Float64),
    problems String,
    agency LowCardinality(String),
    submitted_by String,
    submitted_at DateTime64(3, 'UTC'),
    on_time UInt8,
    comment String
) ENGINE = ReplacingMergeTree
ORDER BY (form, period, unit, revision, submitted_at);
