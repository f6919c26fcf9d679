"""Migration 0009's TTLs and codecs, on the engine: expired rows go at a merge, younger ones stay."""

from __future__ import annotations

import pytest

from controlroom.catalog import Catalog
from controlroom.warehouse import Warehouse
from sinks.migrate import migrate

pytestmark = pytest.mark.integration


def ddl(wh: Warehouse, table: str) -> str:
    return str(wh.query("SELECT create_table_query AS q FROM system.tables WHERE database = 'controlroom' "
                        "AND name = {t:String}", {"t": table})[0]["q"])


def test_ttls_and_codecs_are_in_place(warehouse: Warehouse, catalog: Catalog) -> None:
    migrate(warehouse, catalog)
    readings = ddl(warehouse, "readings")
    assert "TTL toDateTime(ts) + toIntervalDay(730)" in readings
    assert "`ts` DateTime64(3, 'UTC') CODEC(DoubleDelta, ZSTD(1))" in readings
    assert "`value` Float64 CODEC(Gorilla(8), ZSTD(1))" in readings
    assert "ttl_only_drop_parts = 1" in readings
    assert "TTL toDateTime(attempted_at) + toIntervalDay(400)" in ddl(warehouse, "alert_deliveries")
    assert "`after` String CODEC(ZSTD(3))" in ddl(warehouse, "audit_log")
    assert " TTL " not in ddl(warehouse, "audit_log")  # the record of who did what is kept
    assert "TTL toDateTime(received_at) + toIntervalDay(90)" in ddl(warehouse, "dead_letters")


def test_expired_rows_go_at_a_merge_and_younger_ones_stay(warehouse: Warehouse, catalog: Catalog) -> None:
    migrate(warehouse, catalog)
    for days, event_id in ((800, "old"), (700, "kept")):  # two parts of two months: the old one drops whole
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
