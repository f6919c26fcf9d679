"""How long each ClickHouse table keeps its rows: TTLs from the *_RETENTION_DAYS settings, set by `controlroom
migrate` after the migrations. Not a migration: a retention changes with a setting, and migrate() alone (as the
tests and `make up` call it) sets none, so fixtures at fixed dates never expire under a test."""

from __future__ import annotations

import re

from controlroom.errors import ConfigError
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse, table_in

# (table, the row's own time as a DateTime, the setting of its retention in days)
RETENTION = (
    ("readings", "toDateTime(ts)", "readings_retention_days"),
    ("agg_1m", "toDateTime(window_start)", "readings_retention_days"),
    ("agg_1h", "bucket", "rollup_retention_days"),
    ("dead_letters", "toDateTime(received_at)", "diagnostics_retention_days"),
    ("late_readings", "toDateTime(detected_at)", "diagnostics_retention_days"),
    ("alert_deliveries", "toDateTime(attempted_at)", "deliveries_retention_days"),
    ("delivery_attempts", "toDateTime(attempted_at)", "deliveries_retention_days"),
)
_TTL = re.compile(r" TTL (.+?)(?: SETTINGS |$)")


def ttl_plan(settings: Settings) -> dict[str, str | None]:
    """Pure: table → its TTL expression (as ClickHouse writes it back), or None for none."""
    days = settings.readings_retention_days
    if 0 < days * 86_400 < settings.max_past_s:
        raise ConfigError(f"READINGS_RETENTION_DAYS={days} is shorter than MAX_PAST_S ({settings.max_past_s:g} s): "
                          "a reading accepted today could expire before a backfill reads it")
    plan: dict[str, str | None] = {}
    for table, column, setting in RETENTION:
        keep = int(getattr(settings, setting))
        if keep < 0:
            raise ConfigError(f"{setting.upper()} must be 0 (keep) or a number of days, not {keep}")
        plan[table] = f"{column} + toIntervalDay({keep})" if keep else None
    return plan


def current_ttl(warehouse: Warehouse, table: str) -> str | None:
    database, name = table_in(warehouse.database, table).split(".")
    rows = warehouse.query("SELECT engine_full FROM system.tables WHERE database = {db:String} AND name = {t:String}",
                           {"db": database, "t": name})
    found = _TTL.search(str(rows[0]["engine_full"])) if rows else None
    return found.group(1) if found else None


def apply_retention(warehouse: Warehouse, settings: Settings) -> dict[str, str | None]:
    """Set each table's TTL where it differs from the plan (an ALTER … MODIFY TTL re-checks every part: only when
    needed); return the tables changed and their new TTL."""
    changed: dict[str, str | None] = {}
    for table, ttl in ttl_plan(settings).items():
        if current_ttl(warehouse, table) == ttl:
            continue
        if ttl is None:
            warehouse.command(f"ALTER TABLE {table_in(warehouse.database, table)} REMOVE TTL")
        else:
            warehouse.command(f"ALTER TABLE {table_in(warehouse.database, table)} MODIFY TTL {ttl}")
        changed[table] = ttl
    return changed
