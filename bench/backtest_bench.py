"""Backtest figures for `make bench` (issue 13): how long POST /rules/backtest takes on a month of history.

A chDB warehouse in a temp dir, migrated, with 30 days of closed 1-minute windows of PM2.5 at one station in each
of the 34 provinces (1,468,800 agg_1m rows, inserted a day per Arrow batch as the sink does; the migrations'
views build agg_1h and agg_1d from them), generated vectorised: a daily rhythm, noise, and ~3 pollution
episodes a day per province above the shipped rule's 55 µg/m³. The proposal: pm25_high at 50 µg/m³ held 10
minutes, against the shipped version (55, 15 minutes). Timed in this process, the API's own function
(api/backtest.py: rules in force, window reads, both versions through the alerter's code):
- 30 days at the resolution the budget picks (hourly windows),
- 2 days (1-minute windows, within the budget),
- 30 days forced onto 1-minute windows: what the budget avoids (BACKTEST_BENCH_FULL_1M=0 skips it).
Run alone: .venv/bin/python -m bench.backtest_bench
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from api.backtest import backtest, current_rules, read_windows  # noqa: E402
from controlroom.alerts.backtest import RESOLUTIONS, plan_backtest, run_backtest  # noqa: E402
from controlroom.alerts.rules import read_rule_docs  # noqa: E402
from controlroom.catalog import default_catalog  # noqa: E402
from controlroom.settings import Settings  # noqa: E402
from sinks.rows import SCHEMAS  # noqa: E402

DAYS = 30
MIN = 60_000
DAY = 86_400_000
T0 = 1_764_522_000_000  # 2025-11-30T17:00:00Z = 1 December 2025, 00:00 in Hà Nội
FEED = "air_quality_pm25"
FULL_1M = os.environ.get("BACKTEST_BENCH_FULL_1M", "1") != "0"


def log(msg: str) -> None:
    print(f"[bench backtest] {msg}", file=sys.stderr, flush=True)


def pm25(provinces: int, minutes: int, rng: np.random.Generator) -> np.ndarray:
    """(provinces, minutes) of PM2.5: 38 ± a daily rhythm, noise, and episodes of +25..45 for 20-120 minutes."""
    t = np.arange(minutes)
    base = 38 + 8 * np.sin(2 * np.pi * ((t + 7 * 60) % 1440) / 1440)
    values = base + rng.normal(0, 3, (provinces, minutes))
    for p in range(provinces):
        for start in rng.integers(0, minutes, 3 * minutes // 1440):
            values[p, start:start + rng.integers(20, 120)] += rng.uniform(25, 45)
    return np.maximum(values, 0.0)


def day_table(provinces: list[str], values: np.ndarray, day: int) -> pa.Table:
    """One day of agg_1m rows (one reading per window) in the sink's schema."""
    n_p, per_day = len(provinces), 1440
    ws = T0 + day * DAY + np.tile(np.arange(per_day) * MIN, n_p)
    v = values[:, day * per_day:(day + 1) * per_day].reshape(-1)
    n = len(v)
    ts = pa.array(ws, pa.timestamp("ms", tz="UTC"))
    return pa.table({
        "feed": pa.array([FEED] * n), "province": pa.array(np.repeat(provinces, per_day)),
        "dims": pa.array([[("station", "s1")]] * n, pa.map_(pa.string(), pa.string())),
        "dims_key": pa.array(["station=s1"] * n), "source_partition": pa.array(np.zeros(n, np.uint32)),
        "window_start": ts, "window_end": pa.array(ws + MIN, pa.timestamp("ms", tz="UTC")),
        "count": pa.array(np.ones(n, np.uint64)), "sum": pa.array(v), "min": pa.array(v), "max": pa.array(v),
        "avg": pa.array(v), "last": pa.array(v), "last_ts": pa.array(ws + 30_000, pa.timestamp("ms", tz="UTC")),
        "closed_at": pa.array(ws + 65_000, pa.timestamp("ms", tz="UTC")),
        "revision": pa.array(np.zeros(n, np.uint64)),
    }).cast(SCHEMAS["agg_1m"])


def _figures(result: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {"seconds": round(seconds, 2), "resolution": result["resolution"]["table"], "windows": result["windows"],
            "windows_per_s": round(result["windows"] / seconds) if seconds else 0,
            "alerts": result["alerts"]["total"], "alerts_current": result["current"]["alerts"]["total"],
            "only_proposed": result["diff"]["only_proposed"], "only_current": result["diff"]["only_current"]}


def bench_backtest() -> dict[str, Any]:
    from controlroom.warehouse import open_warehouse
    from sinks.migrate import migrate

    catalog = default_catalog()
    provinces = sorted(catalog.provinces)
    rng = np.random.default_rng(13)
    values = pm25(len(provinces), DAYS * 1440, rng)
    shipped = next(d for d in read_rule_docs(None, catalog) if d["id"] == "pm25_high")
    proposal = {**{k: v for k, v in shipped.items() if k != "version"}, "for_s": 600,
                "params": {**shipped["params"], "above": 50}}
    out: dict[str, Any] = {"feed": FEED, "series": len(provinces), "days": DAYS}
    with tempfile.TemporaryDirectory() as tmp:
        wh = open_warehouse(Settings(clickhouse_url=SecretStr(f"chdb://{tmp}/wh")))
        try:
            migrate(wh, catalog)
            t = time.perf_counter()
            for day in range(DAYS):
                wh.insert_arrow(f"{wh.database}.agg_1m", day_table(provinces, values, day), f"bench-bt-{day}")
            out["load"] = {"agg_1m_rows": int(values.size), "seconds": round(time.perf_counter() - t, 1)}
            log(f"{values.size:,} agg_1m rows loaded in {out['load']['seconds']} s")
            in_force = current_rules(wh, read_rule_docs(None, catalog))

            def timed(days: int) -> dict[str, Any]:
                t = time.perf_counter()
                result = backtest(wh, catalog, proposal, T0 // 1000, (T0 + days * DAY) // 1000, in_force)
                figures = _figures(result, time.perf_counter() - t)
                plan = plan_backtest(proposal, in_force["pm25_high"], T0, T0 + days * DAY, catalog)
                t = time.perf_counter()
                sum(1 for _ in read_windows(wh, plan))  # the reads alone: the rest is the evaluation
                return {**figures, "read_seconds": round(time.perf_counter() - t, 2)}

            out["days_30"] = timed(30)
            log(f"30 days: {out['days_30']}")
            out["days_2"] = timed(2)
            log(f"2 days: {out['days_2']}")
            if FULL_1M:
                plan = plan_backtest(proposal, in_force["pm25_high"], T0, T0 + DAYS * DAY, catalog,
                                     resolution=RESOLUTIONS[0])
                t = time.perf_counter()
                result = run_backtest(plan, read_windows(wh, plan), catalog)
                out["days_30_forced_1m"] = _figures(result, time.perf_counter() - t)
                log(f"30 days forced onto agg_1m: {out['days_30_forced_1m']}")
        finally:
            wh.close()
    return out


def table_rows(b: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, comment) rows for bench/run.py's table."""
    what = f"{b['series']} series of {b['feed']}, proposal vs shipped version"

    def text(f: dict[str, Any]) -> str:
        reads = f" (reads {f['read_seconds']} s)" if "read_seconds" in f else ""
        return (f"{f['seconds']} s{reads} ({f['resolution']}, {f['windows']:,} windows, {f['windows_per_s']:,}/s; "
                f"{f['alerts']} vs {f['alerts_current']} alerts)")

    rows = [(f"backtest 30 days, {what}", text(b["days_30"]), "resolution chosen by the window budget"),
            (f"backtest 2 days, {what}", text(b["days_2"]), "")]
    if "days_30_forced_1m" in b:
        rows.append((f"backtest 30 days forced onto agg_1m, {what}", text(b["days_30_forced_1m"]),
                     "what the budget avoids"))
    return rows


if __name__ == "__main__":
    results = bench_backtest()
    for figure, value, comment in table_rows(results):
        print(f"| {figure} | {value} | {comment} |")
