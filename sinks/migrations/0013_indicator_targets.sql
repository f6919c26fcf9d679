-- 0013: indicator targets (issue 16). The yearly plan figure of an indicator for a province ('00' = national).
-- Versioned, never overwritten: every change is a new row with the next version, who set it, when and why; the
-- current target is the highest version. ReplacingMergeTree only folds a retried insert of the same version.
CREATE TABLE IF NOT EXISTS {db}.indicator_targets (
    indicator LowCardinality(String),
    province LowCardinality(String),
    year UInt16,
    version UInt32,
    value Float64,
    set_by String,
    set_at DateTime64(3, 'UTC'),
    note String
) ENGINE = ReplacingMergeTree
ORDER BY (indicator, province, year, version, set_at);  -- two admins at once: both rows kept, the later wins
