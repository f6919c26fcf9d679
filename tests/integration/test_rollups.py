"""Hourly and daily rollups (migration 0004) equal agg_1m FINAL aggregated per bucket, on real chDB:
multi-partition partials, a month boundary, duplicates (retried with another dedup token, re-published with
other values, exact re-insert), inserts touching a bucket one window at a time, and the backfill."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from controlroom.catalog import Catalog
from controlroom.warehouse import ChdbWarehouse
from sinks.migrate import migrate
from sinks.rows import AGG, SCHEMAS

pytestmark = pytest.mark.integration

DB = "controlroom"


def window(feed: str, province: str, station: str, start: datetime, values: list[float], *, partition: int = 0,
           closed: datetime | None = None) -> dict[str, Any]:
    dims = {"station": station} if station else {}
    return {
        "feed": feed, "province": province, "dims": list(dims.items()),
        "dims_key": ",".join(f"{k}={v}" for k, v in sorted(dims.items())), "source_partition": partition,
        "window_start": start, "window_end": start + timedelta(minutes=1), "count": len(values),
        "sum": float(sum(values)), "min": min(values), "max": max(values), "avg": sum(values) / len(values),
        "last": values[-1], "last_ts": start + timedelta(seconds=len(values)),
        "closed_at": closed or start + timedelta(minutes=1, seconds=11),
    }


def insert(wh: ChdbWarehouse, rows: list[dict[str, Any]], token: str) -> None:
    wh.insert_arrow(f"{DB}.{AGG}", pa.Table.from_pylist(rows, SCHEMAS[AGG]), token)


@pytest.fixture()
def wh(tmp_path: Path, catalog: Catalog) -> Iterator[ChdbWarehouse]:
    w = ChdbWarehouse(str(tmp_path / "warehouse"), DB)
    migrate(w, catalog)
    try:
        yield w
    finally:
        w.close()


JAN31_2230 = datetime(2026, 1, 31, 22, 30, tzinfo=UTC)


def seed(wh: ChdbWarehouse) -> None:
    """Three series over 3 hours across the month boundary (31 Jan 22:30 → 1 Feb 01:30 UTC), some windows split
    in two partials (source partitions 0 and 1), inserted in several batches, then duplicates of every kind."""
    batches: list[list[dict[str, Any]]] = [[], [], []]
    for i in range(180):  # one window a minute
        start = JAN31_2230 + timedelta(minutes=i)
        b = batches[i % 3]
        b.append(window("water_level", "01", "s1", start, [400 + i, 401 + i]))
        if i % 2 == 0:  # gauge of another province, every other minute, split across two partitions
            b.append(window("water_level", "79", "s3", start, [90.0 + i], partition=0))
            b.append(window("water_level", "79", "s3", start, [80.0 - i, 70.0], partition=1))
        b.append(window("hotline_calls", "01", "", start, [1.0, 2.0, 3.0]))
    for n, b in enumerate(batches):
        insert(wh, b, f"agg_1m:batch-{n}")
    # an exact re-insert (same dedup token): ClickHouse drops it
    insert(wh, batches[0], "agg_1m:batch-0")
    # the sink retried with other batch bounds: same windows, another token
    insert(wh, batches[1][:40], "agg_1m:retry-1")
    # a window re-published after a worker crash, closed later and with other figures: FINAL keeps the later one
    insert(wh, [window("water_level", "01", "s1", JAN31_2230 + timedelta(minutes=29), [1000.0, 5.0],
                       closed=JAN31_2230 + timedelta(minutes=45))], "agg_1m:republished")
    # single-window inserts touching an hour already rolled up
    for i in range(3):
        insert(wh, [window("hotline_calls", "01", "", JAN31_2230 + timedelta(minutes=i), [1.0, 2.0, 3.0])],
               f"agg_1m:one-{i}")


def utc(value: Any) -> datetime:
    """A DateTime column as chDB's Arrow output gives it (epoch seconds) or as a datetime."""
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else value.astimezone(UTC)


EXPECTED_COLS = "feed, province, dims_key, bucket, windows, count, sum, min, max, last, last_ts"


def from_agg_1m(wh: ChdbWarehouse, trunc: str) -> list[tuple[Any, ...]]:
    """The definition: agg_1m FINAL aggregated per series and bucket."""
    rows = wh.query(
        f"SELECT feed, province, dims_key, toDateTime({trunc}(window_start), 'UTC') AS b, count() AS w, "
        "sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi, argMax(last, (last_ts, last)) AS lv, "
        f"max(last_ts) AS lt FROM {DB}.agg_1m FINAL GROUP BY feed, province, dims_key, b")
    return sorted((r["feed"], r["province"], r["dims_key"], r["b"], r["w"], r["n"], r["total"], r["lo"], r["hi"],
                   r["lv"], r["lt"]) for r in rows)


def rollup(wh: ChdbWarehouse, table: str) -> list[tuple[Any, ...]]:
    rows = wh.query(f"SELECT {EXPECTED_COLS} FROM {DB}.{table} FINAL")
    return sorted((r["feed"], r["province"], r["dims_key"], r["bucket"], r["windows"], r["count"], r["sum"],
                   r["min"], r["max"], r["last"], r["last_ts"]) for r in rows)


def test_rollups_equal_agg_1m_final(wh: ChdbWarehouse) -> None:
    seed(wh)
    raw_rows = wh.query(f"SELECT count() AS n FROM {DB}.agg_1m")[0]["n"]
    final_rows = wh.query(f"SELECT count() AS n FROM {DB}.agg_1m FINAL")[0]["n"]
    assert raw_rows > final_rows  # duplicates are really there, unmerged

    hourly, daily = rollup(wh, "agg_1h"), rollup(wh, "agg_1d")
    assert hourly == from_agg_1m(wh, "toStartOfHour")
    assert daily == from_agg_1m(wh, "toStartOfDay")
    # 4 hours (22, 23, 00, 01) and 2 days per series, in two monthly partitions
    assert len(hourly) == 3 * 4 and len(daily) == 3 * 2
    parts = wh.query(f"SELECT DISTINCT partition FROM system.parts WHERE database = '{DB}' AND table = 'agg_1d' "
                     "AND active ORDER BY partition")
    assert [p["partition"] for p in parts] == ["202601", "202602"]

    # known answers: hotline_calls 01 has 90 windows of 3 calls on 31 Jan (22:30-23:59), 90 on 1 Feb
    day = {(r[0], r[1], utc(r[3]).date().isoformat()): r for r in daily}
    jan, feb = day[("hotline_calls", "01", "2026-01-31")], day[("hotline_calls", "01", "2026-02-01")]
    assert (jan[4], jan[5], jan[6]) == (90, 270, 540.0)
    assert (feb[4], feb[5], feb[6]) == (90, 270, 540.0)
    # the republished window (22:59) replaced the original: 1000 is the max of that hour, its sum counts once
    hour = {(r[0], r[1], utc(r[3]).isoformat()): r for r in hourly}
    h22 = hour[("water_level", "01", "2026-01-31T22:00:00+00:00")]
    orig = sum(400 + i + 401 + i for i in range(30))
    assert h22[5] == 60 and h22[6] == orig - (429 + 430) + 1005.0 and h22[8] == 1000.0
    # partials of the two partitions are summed: province 79 at 00:00-00:59 UTC, 30 windows × 2 partials
    p79 = hour[("water_level", "79", "2026-02-01T00:00:00+00:00")]
    assert p79[4] == 60 and p79[5] == 90 and p79[7] == min(min(90.0 + i, 80.0 - i, 70.0) for i in range(90, 150, 2))


def test_backfill_and_rerun_are_idempotent(wh: ChdbWarehouse, catalog: Catalog) -> None:
    """Windows inserted before migration 0004 are rolled up by its backfill; applying it again changes nothing."""
    for name in ("agg_1h_mv", "agg_1d_mv", "agg_1h_final", "agg_1m_final", "agg_1h", "agg_1d"):
        wh.command(f"DROP TABLE IF EXISTS {DB}.{name}")
    wh.command(f"DELETE FROM {DB}.schema_migrations WHERE version = '0004'")
    seed(wh)  # no rollup exists while these land
    assert migrate(wh, catalog) == ["0004"]
    before = rollup(wh, "agg_1h"), rollup(wh, "agg_1d")
    assert before[0] == from_agg_1m(wh, "toStartOfHour")
    assert before[1] == from_agg_1m(wh, "toStartOfDay")
    # a migration cut short is applied again: same figures
    wh.command(f"DELETE FROM {DB}.schema_migrations WHERE version = '0004'")
    assert migrate(wh, catalog) == ["0004"]
    assert (rollup(wh, "agg_1h"), rollup(wh, "agg_1d")) == before
    # and the merged state (what FINAL anticipates) is the same too
    wh.command(f"OPTIMIZE TABLE {DB}.agg_1h FINAL")
    wh.command(f"OPTIMIZE TABLE {DB}.agg_1d FINAL")
    assert wh.query(f"SELECT count() AS n FROM {DB}.agg_1h")[0]["n"] == len(before[0])
    assert (rollup(wh, "agg_1h"), rollup(wh, "agg_1d")) == before
