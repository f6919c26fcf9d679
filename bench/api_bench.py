"""API figures for `make bench` (issue 6, item 4): /overview and /series latency with ≥10M raw readings.

1. A chDB warehouse in a temp dir, migrated, bulk-loaded through the sink's insert path (Arrow batches of
   ~1M rows via `insert_arrow`, each with a dedup token): history spread over the last 7 days over all
   2,146 catalog series, plus live traffic dense in the newest 15 minutes (the /overview lookback).
2. The old /overview query (a scan of `readings` by ts) and the new one (`readings_recent`) timed on the
   same data in this process: the baseline and the ratio.
3. The API as a subprocess (`controlroom api`, EMBEDDED_SINK=false) and a second process (bench/load_api.py)
   generating the load over loopback: p50/p95/p99/max and requests/s; the API's peak RSS (VmHWM).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from api.overview import RECENT_MS, lookback_ms  # noqa: E402
from api.series_sql import overview_series_sql  # noqa: E402
from controlroom.broker import free_port  # noqa: E402
from controlroom.catalog import default_catalog  # noqa: E402
from controlroom.schema import dims_key  # noqa: E402
from controlroom.settings import Settings  # noqa: E402
from controlroom.supervisor import Child  # noqa: E402
from controlroom.supervisor import _wait_healthy as wait_healthy  # noqa: E402  # the one health wait
from sinks.rows import SCHEMAS  # noqa: E402

BATCH = 1_000_000
HISTORY_MS = 7 * 86_400_000
LIVE_MS = 900_000  # the newest 15 minutes: the /overview lookback
LIVE_PER_S = int(os.environ.get("BENCH_API_LIVE_PER_S", "100"))  # live readings/s; the catalog at its cadences: ~46/s
REQUESTS = int(os.environ.get("BENCH_API_REQUESTS", "300"))
# /overview answers from a snapshot refreshed every OVERVIEW_REFRESH_S (1 s): enough requests to span ~10
# refreshes, so the requests that arrive while one runs are in the percentiles
OVERVIEW_REQUESTS = int(os.environ.get("BENCH_API_OVERVIEW_REQUESTS", "3000"))
CONCURRENCY = int(os.environ.get("BENCH_API_CONCURRENCY", "2"))


def log(msg: str) -> None:
    print(f"[bench api] {msg}", file=sys.stderr, flush=True)


def old_overview_series_sql(database: str, since_ms: int, recent_ms: int) -> tuple[str, dict[str, Any]]:
    """The BASELINE only (the bench, never the API): /overview's series query before migration 0005, verbatim.
    It scans `readings` (ordered by series first) by ts. Same rows as api.series_sql.overview_series_sql."""
    recent = "ev_ts >= fromUnixTimestamp64Milli({recent_ms:Int64}, 'UTC')"
    sql = (
        "SELECT ev_feed AS feed, ev_province AS province, ev_dims_key AS dims_key, "
        "toUnixTimestamp64Milli(max(ev_ts)) AS last_ms, argMax(ev_value, (ev_ts, event_id)) AS last_value, "
        f"countIf({recent}) AS n_recent, sumIf(ev_value, {recent}) AS total_recent, "
        f"minIfOrNull(ev_value, {recent}) AS lo_recent, maxIfOrNull(ev_value, {recent}) AS hi_recent "
        "FROM ("
        "SELECT feed AS ev_feed, event_id, any(province) AS ev_province, any(dims_key) AS ev_dims_key, "
        "any(ts) AS ev_ts, any(value) AS ev_value "
        f"FROM {database}.readings WHERE ts >= fromUnixTimestamp64Milli({{since_ms:Int64}}, 'UTC') "
        "GROUP BY feed, event_id"
        ") GROUP BY feed, province, dims_key"
    )
    return sql, {"since_ms": since_ms, "recent_ms": recent_ms}


class Series:
    """The catalog's 2,146 series as Arrow columns, indexable by series number (vectorised take)."""

    def __init__(self) -> None:
        catalog = default_catalog()
        rows = list(catalog.iter_series())
        self.n = len(rows)
        self.feed = pa.array([f.id for f, _p, _d in rows])
        self.province = pa.array([p for _f, p, _d in rows])
        self.dims = pa.array([list(d.items()) for _f, _p, d in rows], pa.map_(pa.string(), pa.string()))
        self.dims_key = pa.array([dims_key(d) for _f, _p, d in rows])
        self.topic = pa.array([f.topic for f, _p, _d in rows])
        self.lo = np.array([max(f.valid_min, -1e6) for f, _p, _d in rows])
        self.hi = np.array([min(f.valid_max, 1e6) for f, _p, _d in rows])


def readings_batch(series: Series, rng: np.random.Generator, first_id: int, ts_ms: np.ndarray) -> pa.Table:
    """One Arrow batch in the sink's `readings` schema: random series, values inside each feed's range."""
    n = len(ts_ms)
    idx = pa.array(rng.integers(0, series.n, n))
    sidx = idx.to_numpy()
    values = series.lo[sidx] + rng.random(n) * (series.hi[sidx] - series.lo[sidx])
    event_id = pc.binary_join_element_wise("bench-", pc.cast(pa.array(np.arange(first_id, first_id + n)),
                                                             pa.string()), "")
    ts = pa.array(ts_ms, pa.timestamp("ms", tz="UTC"))
    province = series.province.take(idx)
    schema = SCHEMAS["readings"]
    return pa.table({
        "event_id": event_id, "feed": series.feed.take(idx), "province": province, "province_original": province,
        "ts": ts, "value": pa.array(values), "dims": series.dims.take(idx), "dims_key": series.dims_key.take(idx),
        "source": pa.array(np.full(n, "bench")), "ingested_at": ts, "kafka_topic": series.topic.take(idx),
        "kafka_partition": pa.array(np.zeros(n, np.uint32)),
        "kafka_offset": pa.array(np.arange(first_id, first_id + n, dtype=np.uint64)),
        "commune": pa.array(np.full(n, "")), "agency": pa.array(np.full(n, "")),  # no commune; sender not judged here
    }).cast(schema)


def timestamps(n_rows: int, now_ms: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """All timestamps, in time order (as a sink writes them): history over 7 days, live in the last 15 min."""
    n_live = min(n_rows, LIVE_PER_S * LIVE_MS // 1000)
    history = rng.integers(now_ms - HISTORY_MS, now_ms - LIVE_MS, n_rows - n_live)
    live = rng.integers(now_ms - LIVE_MS, now_ms, n_live)
    return np.sort(np.concatenate([history, live])), n_live


def load(wh: Any, n_rows: int, now_ms: int) -> dict[str, float]:
    series = Series()
    rng = np.random.default_rng(6)
    ts_all, n_live = timestamps(n_rows, now_ms, rng)
    t0 = time.perf_counter()
    insert_s = 0.0
    for start in range(0, n_rows, BATCH):
        table = readings_batch(series, rng, start, ts_all[start:start + BATCH])
        t = time.perf_counter()
        wh.insert_arrow(f"{wh.database}.readings", table, f"bench-readings-{start}")
        insert_s += time.perf_counter() - t
        log(f"loaded {start + table.num_rows:,} / {n_rows:,} readings")
    return {"rows": n_rows, "live_rows": n_live, "load_s": round(time.perf_counter() - t0, 1),
            "insert_rows_per_s": round(n_rows / insert_s)}


def time_query(wh: Any, built: tuple[str, dict[str, Any]], n: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
    ms: list[float] = []
    rows: list[dict[str, Any]] = []
    for _ in range(n):
        t = time.perf_counter()
        rows = wh.query(*built)
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    p99 = ms[min(n - 1, n * 99 // 100)]
    return {"runs": float(n), "p50_ms": round(statistics.median(ms), 1), "p99_ms": round(p99, 1),
            "max_ms": round(ms[-1], 1)}, rows


def same_rows(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Equal answers; a sum may differ in its last bits with the order of summation."""
    def key(r: dict[str, Any]) -> tuple[str, str, str]:
        return r["feed"], r["province"], r["dims_key"]

    def norm(r: dict[str, Any]) -> tuple[Any, ...]:
        return (*key(r), r["last_ms"], r["last_value"], r["n_recent"], round(r["total_recent"], 3), r["lo_recent"],
                r["hi_recent"])
    return sorted(map(norm, a)) == sorted(map(norm, b))


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def load_generator(url: str, key: str, path: str, requests: int) -> dict[str, float]:
    """bench/load_api.py as a second process, over loopback."""
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "load_api.py"), "--url", url, "--key", key, "--path",
                          path, "--requests", str(requests), "--concurrency", str(CONCURRENCY), "--warmup", "20"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed on {path}:\n{out.stderr[-2000:]}")
    result: dict[str, float] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_api(n_rows: int = 10_000_000) -> dict[str, Any]:
    from api.keystore import KeyStore
    from controlroom.warehouse import open_warehouse
    from sinks.migrate import migrate

    started = time.time()
    catalog = default_catalog()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="cr-api-bench-") as tmp:
        url = f"chdb://{tmp}/warehouse"
        wh = open_warehouse(Settings(clickhouse_url=SecretStr(url)))
        try:
            migrate(wh, catalog)
            now = int(time.time() * 1000)
            log(f"loading {n_rows:,} readings (7 days of history, {LIVE_PER_S:,}/s live in the last 15 minutes)")
            out["load"] = load(wh, n_rows, now)
            log(f"loaded: {out['load']}")
            now = int(time.time() * 1000)
            since, recent = now - lookback_ms(catalog), now - RECENT_MS
            log("timing the /overview series query in process: old (readings by ts) vs new (0005 tables)")
            out["overview_query_old"], old_rows = time_query(wh, old_overview_series_sql(wh.database, since, recent), 8)
            out["overview_query_new"], new_rows = time_query(wh, overview_series_sql(wh.database, since, recent), 40)
            if not same_rows(old_rows, new_rows):
                raise AssertionError("the new /overview query answers differently from the old one")
            out["overview_series"] = len(new_rows)
            out["overview_query_ratio"] = round(out["overview_query_old"]["p50_ms"]
                                                / max(out["overview_query_new"]["p50_ms"], 0.1), 1)
            log(f"old {out['overview_query_old']}, new {out['overview_query_new']}")
            key, _info = KeyStore(wh).create(name="api bench", role="viewer", created_by="bench")
        finally:
            wh.close()  # one process per chDB path: the API opens it next
        port = free_port()
        env = dict(os.environ, CLICKHOUSE_URL=url, EMBEDDED_SINK="false", API_HOST="127.0.0.1", API_PORT=str(port),
                   DATA_DIR=f"{tmp}/data", LOG_FORMAT="json", LOG_LEVEL="warning",
                   RATE_LIMIT_PER_S="1000000", RATE_LIMIT_BURST="1000000")  # measure the API, not its limiter
        proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "api"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(f"{base}/healthz", [Child("api", [], proc)], 120.0, lambda: False)
            for name, path, n in (("overview", "/overview", OVERVIEW_REQUESTS),
                                  ("series", "/series?feed=water_level&province=01", REQUESTS)):
                log(f"load: {n} requests of {path}, {CONCURRENCY} in flight, from a second process")
                out[name] = load_generator(base, key.token, path, n)
                log(f"{path}: {out[name]}")
            out["api_peak_rss_mb"] = vm_hwm_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    out["seconds"] = round(time.time() - started, 1)
    return out


if __name__ == "__main__":
    print(orjson.dumps(bench_api(int(os.environ.get("BENCH_API_ROWS", "10000000"))),
                       option=orjson.OPT_INDENT_2).decode())
