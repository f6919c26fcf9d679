-- 0008: inhibition (issue 13). An alert event muted by another firing alert names it: `inhibited_by` is the
-- source's alert id ('' when not inhibited; rows from before this migration were never inhibited). The
-- materialized view lists its columns, so it is recreated to carry the new one into alerts_current. Migrations
-- run before the sink consumes, so no alert event is inserted between the DROP and the CREATE; a migration cut
-- short between them runs again whole (both statements are idempotent).

ALTER TABLE {db}.alert_events ADD COLUMN IF NOT EXISTS inhibited_by String DEFAULT '';

ALTER TABLE {db}.alerts_current ADD COLUMN IF NOT EXISTS inhibited_by String DEFAULT '';

DROP TABLE IF EXISTS {db}.alerts_current_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.alerts_current_mv TO {db}.alerts_current AS
SELECT alert_id, seq, fingerprint, rule_id, rule_version, rule_type, severity, event, state, feed, province,
       dims, dims_key, summary_vi, summary_en, value, evidence, starts_at, ends_at, event_at, ack_by,
       ack_comment, silenced, link, inhibited_by
FROM {db}.alert_events;
