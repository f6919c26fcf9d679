-- 0011: security and configuration tables move to a database of their own, {admin} ({db}_admin), which POST /query
-- never reads (api/readonly_sql.py allows only {db}) and the `analyst` ClickHouse user is never granted
-- (deploy/clickhouse/analyst.xml grants {db}.* only). api_keys holds key hashes, audit_log who changed what,
-- subscriptions webhook targets and e-mail addresses. RENAME across databases moves a table's data without a copy
-- (ClickHouse server and chDB alike); IF EXISTS makes a migration cut short safe to apply again. 0002, 0003 and 0009
-- now create (or move) them in {admin} directly, so nothing creates them in {db} any more: a new warehouse never
-- holds them where analysts read, and two migrations at once cannot re-create one behind a move.
-- (Numbered 0011: another branch uses 0010. Renumber at merge if needed.)

CREATE DATABASE IF NOT EXISTS {admin};

RENAME TABLE IF EXISTS {db}.api_keys TO {admin}.api_keys;

RENAME TABLE IF EXISTS {db}.audit_log TO {admin}.audit_log;

RENAME TABLE IF EXISTS {db}.subscriptions TO {admin}.subscriptions;
