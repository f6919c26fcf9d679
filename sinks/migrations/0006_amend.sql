-- 0006: late readings amend their stored window (issue 11).
-- agg_1m rows are now recomputed by the sink from readings FINAL (sinks/recompute.py) when the worker
-- closes a window, and again when a late reading within the amend horizon arrives. `revision` is the
-- highest source offset a row's figures include: an amended window has a higher one than its first
-- close. The version of the ReplacingMergeTree stays `closed_at` (the time of the recompute): a later
-- recompute of a window always reads a superset of the raw readings an earlier one read.
-- late_readings.status: `amended` (aggregated into its window) or `too_late` (older than the amend
-- horizon: stored raw, not aggregated until `controlroom backfill` covers it). Rows from before this
-- migration were never aggregated, hence the default.

ALTER TABLE {db}.agg_1m ADD COLUMN IF NOT EXISTS revision UInt64 DEFAULT 0;

ALTER TABLE {db}.late_readings ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT 'too_late';
