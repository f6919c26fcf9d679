"""/overview's tables (migration 0005: readings_latest, readings_recent) give the same answers as the plain
aggregation over `readings`, on real chDB, after duplicates, a sink retry, a replay and a backfill."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from api.overview import RECENT_MS, lookback_ms
from api.series_sql import overview_series_sql
from controlroom.catalog import default_catalog
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse, open_warehouse
from sinks.migrate import migrate, migration_files, render, split_statements
from sinks.rows import Record
from sinks.writer import SinkWriter
from tests.integration.pipeline import sent_record

pytestmark = pytest.mark.integration

MIN = 60_000
Row = tuple[str, str, str, str, int, float]  # event_id, feed, province, station, ts, value


def plain_sql(db: str, since_ms: int, recent_ms: int) -> tuple[str, dict[str, Any]]:
    """The definition: every reading since `since_ms` in `readings`, deduplicated by event_id."""
    recent = "ev_ts >= fromUnixTimestamp64Milli({recent_ms:Int64}, 'UTC')"
    return (
        "SELECT ev_feed AS feed, ev_province AS province, ev_dims_key AS dims_key, "
        "toUnixTimestamp64Milli(max(ev_ts)) AS last_ms, argMax(ev_value, (ev_ts, event_id)) AS last_value, "
        f"countIf({recent}) AS n_recent, sumIf(ev_value, {recent}) AS total_recent, "
        f"minIfOrNull(ev_value, {recent}) AS lo_recent, maxIfOrNull(ev_value, {recent}) AS hi_recent FROM ("
        "SELECT feed AS ev_feed, event_id, any(province) AS ev_province, any(dims_key) AS ev_dims_key, "
        f"any(ts) AS ev_ts, any(value) AS ev_value FROM {db}.readings "
        "WHERE ts >= fromUnixTimestamp64Milli({since_ms:Int64}, 'UTC') GROUP BY feed, event_id"
        ") GROUP BY feed, province, dims_key"), {"since_ms": since_ms, "recent_ms": recent_ms}


def records(rows: list[Row], first_offset: int, now_ms: int) -> list[Record]:
    return [sent_record("feeds.water_level", 0, first_offset + i, now_ms, orjson.dumps(
        {"event_id": eid, "feed": feed, "province": prov, "ts": ts, "value": value, "dims": {"station": station},
         "source": "test"})) for i, (eid, feed, prov, station, ts, value) in enumerate(rows)]


def oracle(rows: list[Row], since_ms: int, recent_ms: int) -> list[tuple[Any, ...]]:
    """The expected answer computed in Python from the distinct readings."""
    events = {r[0]: r for r in rows}
    by_series: dict[tuple[str, str, str], list[Row]] = {}
    for r in events.values():
        if r[4] >= since_ms:
            by_series.setdefault((r[1], r[2], f"station={r[3]}"), []).append(r)
    out = []
    for key, rs in by_series.items():
        last = max(rs, key=lambda r: (r[4], r[0]))
        recent = [r[5] for r in rs if r[4] >= recent_ms]
        out.append((*key, last[4], last[5], len(recent), float(sum(recent)), min(recent, default=None),
                    max(recent, default=None)))
    return sorted(out)


def answer(wh: Warehouse, built: tuple[str, dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted((r["feed"], r["province"], r["dims_key"], r["last_ms"], r["last_value"], r["n_recent"],
                   r["total_recent"], r["lo_recent"], r["hi_recent"]) for r in wh.query(*built))


def seeded(now: int) -> list[Row]:
    return [
        ("a1", "water_level", "01", "s1", now - 20 * MIN, 1.0),      # before the lookback: not counted
        ("a2", "water_level", "01", "s1", now - 10 * MIN, 2.0),      # in the lookback, not recent
        ("a3", "water_level", "01", "s1", now - 2 * MIN, 4.0),
        ("a4", "water_level", "01", "s1", now - MIN, 8.0),
        ("b1", "water_level", "01", "s2", now - 12 * MIN, 5.0),      # seen, nothing recent: lo/hi NULL
        ("c1", "water_level", "79", "s9", now - 2 * 86_400_000, 3.0),  # history only: not seen
        ("d1", "water_level", "79", "s3", now - 30_000, 7.0),
        ("d2", "water_level", "79", "s3", now - 30_000, 6.0),        # same ts: the greater event_id is last
        ("d0", "water_level", "79", "s3", now - 30_000, 9.0),
    ]


def check(wh: Warehouse, rows: list[Row], now: int) -> None:
    wall = (now - lookback_ms(default_catalog()), now - RECENT_MS)  # what /overview asks
    assert [e[:3] for e in oracle(rows, *wall)] == [
        ("water_level", "01", "station=s1"), ("water_level", "01", "station=s2"), ("water_level", "79", "station=s3")]
    for since, recent in [wall, (now - 11 * MIN, now - 90_000), (now - 3 * 86_400_000, now - 25 * MIN)]:
        expected = oracle(rows, since, recent)
        assert answer(wh, overview_series_sql(wh.database, since, recent)) == expected
        assert answer(wh, plain_sql(wh.database, since, recent)) == expected


@pytest.fixture()
def migrated(make_settings) -> Iterator[tuple[Settings, Warehouse]]:  # type: ignore[no-untyped-def]
    settings = make_settings()
    wh = open_warehouse(settings)
    try:
        migrate(wh, default_catalog())
        yield settings, wh
    finally:
        wh.close()


def test_same_answers_after_duplicates_retry_and_replay(migrated: tuple[Settings, Warehouse]) -> None:
    settings, wh = migrated
    now = int(time.time() * 1000)
    sink = SinkWriter(settings, default_catalog(), wh)
    rows = seeded(now)
    batch = records(rows[:6] + [rows[3]], 0, now)  # a4 twice in one batch
    sink.write(batch)
    sink.write(batch)  # the sink's retry: same rows, same dedup token
    sink.write(records(rows[2:], 100, now))  # a replay with other batch bounds: a3..c1 again, then d*
    raw = wh.query(f"SELECT count() AS n FROM {wh.database}.readings")[0]["n"]
    assert raw > len(rows)  # duplicates are really stored (no merge yet): the readers must deduplicate
    check(wh, rows, now)


def test_migration_backfills_existing_readings_idempotently(migrated: tuple[Settings, Warehouse]) -> None:
    settings, wh = migrated
    now = int(time.time() * 1000)
    db = wh.database
    # a warehouse from before 0005: its objects gone, its version not recorded
    for name in ("readings_latest_mv", "readings_recent_mv"):
        wh.command(f"DROP VIEW {db}.{name}")
    for name in ("readings_latest", "readings_recent"):
        wh.command(f"DROP TABLE {db}.{name}")
    wh.command(f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = '0005' SETTINGS mutations_sync = 1")
    rows = seeded(now)
    SinkWriter(settings, default_catalog(), wh).write(records(rows + [rows[4]], 0, now))
    assert migrate(wh, default_catalog()) == ["0005"]
    check(wh, rows, now)
    count = f"SELECT count() AS n, uniqExact(event_id) AS u FROM {db}.readings_recent"
    before = wh.query(count)[0]
    assert before["u"] == 8  # every reading of the last day (c1 is two days old)
    sql = dict(migration_files())["0005"]
    for statement in split_statements(render(sql, db)):  # cut short and applied again: nothing twice
        wh.command(statement)
    assert wh.query(count)[0] == before
    check(wh, rows, now)
