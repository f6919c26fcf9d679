"""The contract measures and the daily score in ClickHouse (migration 0017) on chDB equal a recomputation in Python
from the same seeded rows, with controlroom/contracts.py's formula: two received hours (a whole one and 20 minutes
of the next), every contract's series at its cadence, with seeded gaps, a silent body, surplus readings, late
readings and dead letters charged to their senders."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest

from controlroom.catalog import Catalog
from controlroom.contracts import Contract, hour_quality, volume_share
from controlroom.warehouse import Warehouse, table_in
from sinks.migrate import migrate
from sinks.rows import AGG, DEAD, LATE, SCHEMAS

pytestmark = pytest.mark.integration

H0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)  # 10:00 in Vietnam: both hours are one Vietnamese day
HOURS = ((H0, 60), (H0 + timedelta(hours=1), 20))  # (hour, minutes received)
SILENT = "hydromet"  # sends nothing in the second hour


def insert(wh: Warehouse, table: str, rows: list[dict[str, Any]]) -> None:
    schema = SCHEMAS[table]
    fill = {pa.string(): "", pa.map_(pa.string(), pa.string()): []}
    full = [{f.name: r.get(f.name, fill.get(f.type, 0)) for f in schema} for r in rows]
    wh.insert_arrow(table_in(wh.database, table), pa.Table.from_pylist(full, schema))


def window_row(feed: str, province: str, dkey: str, start: datetime, count: int, agency: str) -> dict[str, Any]:
    """An agg_1m row of `count` readings of one series, sent by `agency`."""
    return {"feed": feed, "province": province, "dims_key": dkey, "window_start": start,
            "window_end": start + timedelta(minutes=1), "count": count, "sum": 1.0 * count,
            "last_ts": start + timedelta(seconds=30), "closed_at": start + timedelta(seconds=70), "agency": agency,
            "dims": [tuple(kv.split("=")) for kv in dkey.split(",") if kv]}


def windows_of(c: Contract, rng: random.Random) -> tuple[list[dict[str, Any]], dict[tuple[str, datetime], list[int]]]:
    """agg_1m rows of a contract's series over both hours; per hour: [series reported, readings]."""
    rows: list[dict[str, Any]] = []
    got: dict[tuple[str, datetime], list[int]] = {}
    step = max(60, int(c.cadence_s))
    per_window = max(1, round(60 / c.cadence_s))
    surplus = 2 if c.agency == "customs" else 1  # customs sends twice what it promised: above its band
    for hour, minutes in HOURS:
        if c.agency == SILENT and hour != H0:
            continue
        acc = got.setdefault((c.key, hour), [0, 0])
        for province, dkey in c.series:
            if rng.random() < 0.1:
                continue  # a series that missed the hour
            n = 0
            for s in range(0, minutes * 60, step):
                if rng.random() < 0.05:
                    continue  # a missed window
                count = per_window * surplus
                rows.append(window_row(c.feed, province, dkey, hour + timedelta(seconds=s), count, c.agency))
                n += count
            if n:
                acc[0] += 1
                acc[1] += n
    return rows, got


def test_contract_hourly_and_daily_scores_equal_a_recomputation(warehouse: Warehouse, catalog: Catalog) -> None:
    migrate(warehouse, catalog)
    rng = random.Random(15)
    contracts = list(catalog.contracts.values())
    got: dict[tuple[str, datetime], list[int]] = {}
    aggs: list[dict[str, Any]] = []
    for c in contracts:
        rows, counts = windows_of(c, rng)
        aggs += rows
        got.update(counts)
    insert(warehouse, AGG, aggs)
    # late readings (some too late) and dead letters, charged to their senders; one dead letter without a sender
    late: dict[tuple[str, datetime], list[int]] = defaultdict(lambda: [0, 0])
    dead: dict[tuple[str, datetime], int] = defaultdict(int)
    late_rows, dead_rows = [], []
    for i, c in enumerate(rng.sample(contracts, 12)):
        for j in range(rng.randint(1, 40)):
            too_late = j % 3 == 0
            late_rows.append({"event_id": f"late-{i}-{j}", "feed": c.feed, "province": c.series[0][0],
                              "ts": H0 + timedelta(seconds=7 * j), "status": "too_late" if too_late else "amended",
                              "agency": c.agency})
            late[(c.key, H0)][0] += 1
            late[(c.key, H0)][1] += too_late
        for j in range(rng.randint(1, 30)):
            dead_rows.append({"dlq_id": f"dlq-{i}-{j}", "reason": "out_of_range", "feed": c.feed, "agency": c.agency,
                              "received_at": H0 + timedelta(minutes=61, seconds=j)})
            dead[(c.key, H0 + timedelta(hours=1))] += 1
    dead_rows.append({"dlq_id": "nobody", "reason": "missing_agency", "feed": "water_level", "received_at": H0})
    insert(warehouse, LATE, late_rows)
    insert(warehouse, DEAD, dead_rows)

    stored = {(r["agency"] + "/" + r["feed"], datetime.fromtimestamp(r["hour_s"], UTC)): r for r in warehouse.query(
        f"SELECT *, toUnixTimestamp(hour) AS hour_s FROM {warehouse.database}.contract_hourly")}
    assert len(stored) == len(contracts) * 2
    qualities: dict[str, list[float]] = defaultdict(list)
    for c in contracts:
        for hour, minutes in HOURS:
            row = stored[(c.key, hour)]
            reported, readings = got.get((c.key, hour), [0, 0])
            n_late, too_late = late[(c.key, hour)]
            n_dead = dead[(c.key, hour)]
            received = readings + too_late
            judged = minutes * 60 >= 2 * c.cadence_s
            lo, hi = c.per_hour_min * minutes / 60, c.per_hour_max * minutes / 60
            expected = {
                "minutes": minutes, "reported": reported, "readings": readings, "late": n_late, "dead": n_dead,
                "completeness": reported / len(c.series) if judged else None,
                "timeliness": 1 - n_late / received if received else None,
                "validity": received / (received + n_dead) if received + n_dead else None,
                "volume": volume_share(readings, lo, hi) if judged else None}
            quality = hour_quality(expected["completeness"], expected["timeliness"], expected["validity"],
                                   expected["volume"], c.timeliness_pct)
            assert {k: row[k] for k in expected} == pytest.approx(expected), c.key
            assert row["quality"] == pytest.approx(quality), f"{c.key} {hour} {row} {expected}"
            if quality is not None:
                qualities[c.agency].append(quality)
    # the silent body's second hour: nothing reported, no volume: quality 0
    assert stored[(f"{SILENT}/water_level", H0 + timedelta(hours=1))]["quality"] == 0
    surplus = stored[("customs/customs_trade_value", H0)]  # above its band: max / readings
    assert surplus["readings"] > surplus["band_max"] and surplus["volume"] < 1

    daily = {r["agency"]: r for r in warehouse.query(
        f"SELECT agency, toString(day) AS day, score, contract_hours FROM {warehouse.database}.agency_scores_daily")}
    assert set(daily) == set(qualities)
    for agency, qs in qualities.items():
        assert daily[agency]["score"] == pytest.approx(sum(qs) / len(qs)), agency
        assert daily[agency]["contract_hours"] == len(qs)
        assert str(daily[agency]["day"]) == "2026-11-30"
    assert daily[SILENT]["score"] < 60 < min(s["score"] for a, s in daily.items() if a not in (SILENT, "customs"))
