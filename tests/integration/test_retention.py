"""Retention (sinks/retention.py, set by `controlroom migrate`) and migration 0009's codecs, on the engine:
expired rows go at a merge and younger ones stay; a changed setting changes the TTL; 0 removes it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.catalog import Catalog
from controlroom.errors import ConfigError
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse, table_in
from sinks.migrate import migrate
from sinks.retention import apply_retention, current_ttl, ttl_plan

pytestmark = pytest.mark.integration


def ddl(wh: Warehouse, table: str) -> str:
    database, name = table_in(wh.database, table).split(".")
    return str(wh.query("SELECT create_table_query AS q FROM system.tables WHERE database = {d:String} "
                        "AND name = {t:String}", {"d": database, "t": name})[0]["q"])


def test_codecs_are_in_place_and_migrations_alone_set_no_ttl(warehouse: Warehouse, catalog: Catalog) -> None:
    migrate(warehouse, catalog)
    readings = ddl(warehouse, "readings")
    assert "`ts` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1))" in readings
    assert "`value` Float64 CODEC(Gorilla(8), ZSTD(1))" in readings
    assert "ttl_only_drop_parts = 1" in readings
    assert "`after` String CODEC(ZSTD(3))" in ddl(warehouse, "audit_log")
    assert "`payload` String CODEC(ZSTD(3))" in ddl(warehouse, "dead_letters")
    assert all(current_ttl(warehouse, table) is None for table in ttl_plan(Settings()))


def test_retention_expires_old_rows_keeps_younger_ones_and_follows_the_settings(
        warehouse: Warehouse, catalog: Catalog, make_settings) -> None:  # type: ignore[no-untyped-def]
    migrate(warehouse, catalog)
    settings: Settings = make_settings(max_past_s=400 * 86_400.0)  # the production defaults otherwise
    assert apply_retention(warehouse, settings) == {
        "readings": "toDateTime(ts) + toIntervalDay(730)", "agg_1m": "toDateTime(window_start) + toIntervalDay(730)",
        "agg_1h": "bucket + toIntervalDay(1825)", "dead_letters": "toDateTime(received_at) + toIntervalDay(90)",
        "late_readings": "toDateTime(detected_at) + toIntervalDay(90)",
        "alert_deliveries": "toDateTime(attempted_at) + toIntervalDay(400)",
        "delivery_attempts": "toDateTime(attempted_at) + toIntervalDay(400)"}
    assert apply_retention(warehouse, settings) == {}  # read back as written: no second ALTER
    assert " TTL " not in ddl(warehouse, "audit_log")  # the record of who did what is kept
    for days, event_id in ((800, "old"), (700, "kept")):  # two months, two parts: the old one drops whole
        warehouse.command(
            "INSERT INTO controlroom.readings (event_id, feed, province, province_original, ts, value, dims, "
            "dims_key, source, ingested_at, kafka_topic, kafka_partition, kafka_offset) VALUES "
            f"('{event_id}', 'water_level', '01', '01', now64(3, 'UTC') - INTERVAL {days} DAY, 1.5, map(), '', "
            "'t', now64(3, 'UTC'), 'feeds.water_level', 0, 1)")
    for days, dlq_id in ((100, "old"), (10, "kept")):
        warehouse.command(
            "INSERT INTO controlroom.dead_letters (dlq_id, reason, field, detail, payload, feed, source_topic, "
            "source_partition, source_offset, received_at, kafka_offset) VALUES "
            f"('{dlq_id}', 'malformed', '', '', 'x', '', 'feeds.dlq', 0, 1, now64(3, 'UTC') - INTERVAL {days} DAY, 1)")
    warehouse.command("OPTIMIZE TABLE controlroom.readings FINAL")
    warehouse.command("OPTIMIZE TABLE controlroom.dead_letters FINAL")
    assert warehouse.query("SELECT event_id FROM controlroom.readings") == [{"event_id": "kept"}]
    assert warehouse.query("SELECT dlq_id FROM controlroom.dead_letters") == [{"dlq_id": "kept"}]
    # a longer retention, and 0 (keep): the TTL follows
    longer = make_settings(max_past_s=400 * 86_400.0, readings_retention_days=1000, diagnostics_retention_days=0)
    assert apply_retention(warehouse, longer) == {
        "readings": "toDateTime(ts) + toIntervalDay(1000)", "agg_1m": "toDateTime(window_start) + toIntervalDay(1000)",
        "dead_letters": None, "late_readings": None}
    assert current_ttl(warehouse, "dead_letters") is None


def test_a_readings_retention_shorter_than_max_past_is_refused(make_settings) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="shorter than MAX_PAST_S"):
        ttl_plan(make_settings(max_past_s=400 * 86_400.0, readings_retention_days=30))


def test_controlroom_migrate_sets_the_ttls(tmp_path: Path) -> None:
    """The compose job's command: migrations, then retention; a second run changes nothing."""
    env = {"CLICKHOUSE_URL": f"chdb://{tmp_path / 'wh'}", "LOG_FORMAT": "console", "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [sys.executable, "-m", "controlroom.cli", "migrate"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "readings: TTL toDateTime(ts) + toIntervalDay(730)" in first
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=True).stdout
    assert "nothing (up to date)" in second and "TTL" not in second
