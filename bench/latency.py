"""Latency at a fixed load (issue 6, item 2) and memory of every process over the run (item 5).

The whole system runs as in `make up` (Tansu, API with its embedded sink on chDB, streams worker,
alerter; every default rule active) while this process publishes simulated readings at a fixed
rate, batched per (feed, province) for one second as a provincial system would send them. Probes
measure alert latency: once a second a water-level reading far above every alarm level, sent on
its own the moment it is measured, for a station not probed yet in the current minute; its alert
(topic `alerts`, event `firing`) is timed from the reading's own timestamp. Storage latency is
measured from the table: `ingested_at − ts` of every reading after the warm-up (ingested_at is
stamped as the sink converts a batch, just before that batch's insert).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from api.memprobe import proc_status_mb
from controlroom.broker import free_port, has_idempotence, start_broker
from controlroom.catalog import default_catalog
from controlroom.kafka import ensure_topics, make_consumer, make_producer, system_topics
from controlroom.schema import ALERTS_TOPIC, LIVE_TOPIC, agency_headers
from controlroom.settings import Settings
from producers.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
READINGS_PER_S_AT_RATE_1 = 46.5  # the catalog's 2,146 series at their cadences
MEMORY_FIELDS = ("VmRSS", "RssAnon", "RssFile")
PROBE_VALUE = 2900.0  # above every station's level III (shipped rules), inside the valid range


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    s = sorted(values)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, int(p * len(s)))], 1)

    return {"n": len(s), "p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "max": round(s[-1], 1)}


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    return proc_status_mb(pid, (field,)).get(field, 0.0)


class Run:
    def __init__(self, seconds: float, rate_per_s: float, warmup_s: float) -> None:
        self.seconds, self.rate_per_s, self.warmup_s = seconds, rate_per_s, warmup_s
        self.catalog = default_catalog()
        self.probes: dict[tuple[str, str], int] = {}  # (province, station) -> probe ts, this minute
        self.probed_at: dict[str, int] = {}  # alert fingerprint part "province|station=…" -> probe ts
        self.alert_ms: list[float] = []
        self.slowest: list[tuple[int, float]] = []  # (ms, second of the minute the probe was sent)
        self.live_ms: list[float] = []  # the worker's leg: reading → its open window on agg.live
        self.live_pending: dict[str, int] = {}
        self.published = 0
        self.messages = 0
        self.rss: dict[str, list[dict[str, float]]] = {}  # VmRSS, RssAnon (private), RssFile (mapped files)

    async def generate(self, settings: Settings, t_end: float, t_measure: float) -> None:
        sim = Simulator(self.catalog, seed=7, rate=self.rate_per_s / READINGS_PER_S_AT_RATE_1,
                        start_ms=int(time.time() * 1000))
        stations = [(p, s) for p in sorted(self.catalog.provinces) for s in ("s1", "s2")]
        producer = make_producer(settings)
        await producer.start()
        buffers: dict[tuple[str, bytes], list[bytes]] = {}
        last_flush = time.monotonic()
        minute = -1
        next_probe = t_measure
        try:
            while time.monotonic() < t_end:
                now = int(time.time() * 1000)
                for topic, key, value in sim.due(now):
                    buffers.setdefault((topic, key), []).append(value)
                    self.published += 1
                if time.monotonic() - last_flush >= 1.0:  # the source's one-second batches
                    for (topic, key), chunk in buffers.items():
                        await producer.send(topic, b"[" + b",".join(chunk) + b"]", key=key,
                                            headers=agency_headers(self.catalog, topic, key))
                        self.messages += 1
                    buffers.clear()
                    last_flush = time.monotonic()
                if time.monotonic() >= next_probe:
                    next_probe += 1.0
                    if now // 60_000 != minute:
                        minute, self.probes = now // 60_000, {}
                    free = [ps for ps in stations if ps not in self.probes]
                    if free and now % 60_000 < 50_000:  # leave the minute's end: its window may close first
                        province, station = free[0]
                        self.probes[(province, station)] = now
                        self.probed_at[f"{province}|station={station}"] = now
                        self.live_pending[f"{province}|station={station}"] = now
                        doc = {"event_id": f"probe-{now}-{province}-{station}", "feed": "water_level",
                               "province": province, "ts": now, "value": PROBE_VALUE,
                               "dims": {"station": station}, "source": "bench-probe"}
                        await producer.send(self.catalog.feeds["water_level"].topic, orjson.dumps(doc),
                                            key=province.encode(), headers=[("agency", b"hydromet")])
                        self.published += 1
                await asyncio.sleep(0.02)
        finally:
            await producer.stop()

    async def watch_alerts(self, settings: Settings, t_end: float) -> None:
        consumer = make_consumer(settings, ALERTS_TOPIC, LIVE_TOPIC, fetch_max_wait_ms=20)
        await consumer.start()
        try:
            while time.monotonic() < t_end:
                batch = await consumer.getmany(timeout_ms=100)
                wall = time.time() * 1000
                for tp, records in batch.items():
                    if tp.topic == LIVE_TOPIC:
                        self._live(records, wall)
                        continue
                    for rec in records:
                        e = orjson.loads(rec.value)
                        if e["rule_id"] != "water_level_alarm" or e["event"] != "firing":
                            continue
                        sent = self.probed_at.pop(e["fingerprint"].split("|", 2)[2], None)
                        if sent is not None:
                            self.alert_ms.append(wall - sent)
                            self.slowest.append((round(wall - sent), round(sent % 60_000 / 1000, 1)))
        finally:
            await consumer.stop()

    def _live(self, records: list[Any], wall: float) -> None:
        if not self.live_pending:
            return
        for rec in records:
            for w in orjson.loads(rec.value):
                if w["feed"] == "water_level" and w["max"] >= PROBE_VALUE:
                    sent = self.live_pending.pop(f"{w['province']}|{w['dims_key']}", None)
                    if sent is not None:
                        self.live_ms.append(wall - sent)

    async def sample_rss(self, pids: dict[str, int], t_end: float) -> None:
        while time.monotonic() < t_end:
            for name, pid in pids.items():
                self.rss.setdefault(name, []).append(proc_status_mb(pid, MEMORY_FIELDS))
            await asyncio.sleep(5.0)


def memory_figures(samples: list[dict[str, float]], peak_mb: float) -> dict[str, Any]:
    """Per field: the first sample after the first minute, the last, and one a minute (sampled every 5 s).
    RssAnon is the process's own memory; RssFile is mapped files (chDB's 555 MB library, shared, reclaimable)."""
    minute_1 = samples[min(12, len(samples) - 1)]
    out: dict[str, Any] = {"peak_mb": peak_mb}
    for f in MEMORY_FIELDS:
        key = "" if f == "VmRSS" else f.lower() + "_"
        out[f"{key}minute_1_mb"] = minute_1.get(f, 0.0)
        out[f"{key}last_mb"] = samples[-1].get(f, 0.0)
        out[f"{key}each_minute_mb"] = [s.get(f, 0.0) for s in samples[::12]]
    return out


def _spawn(cmd: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "controlroom.cli", cmd], env=env, cwd=ROOT,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def storage_latency(clickhouse_url: str, since_ms: int) -> dict[str, float]:
    from controlroom.warehouse import open_warehouse

    wh = open_warehouse(Settings(clickhouse_url=clickhouse_url))  # type: ignore[arg-type]
    try:
        rows = wh.query(
            "SELECT toFloat64(toUnixTimestamp64Milli(ingested_at) - toUnixTimestamp64Milli(ts)) AS d "
            f"FROM {wh.database}.readings WHERE ts >= fromUnixTimestamp64Milli({{since:Int64}}) "
            "AND source != 'bench-probe'", {"since": since_ms})
    finally:
        wh.close()
    return percentiles([float(r["d"]) for r in rows])


def bench_latency(seconds: float = 120.0, rate_per_s: float = 10_000.0, warmup_s: float = 20.0,
                  broker_kind: str = "tansu") -> dict[str, Any]:
    """The whole system (API with its sink, worker, alerter) on a fresh broker (`broker_kind`: "tansu" or
    "kafka"), fed `rate_per_s` readings for `seconds` after a warm-up."""
    run = Run(seconds, rate_per_s, warmup_s)
    keep = os.environ.get("BENCH_KEEP_DIR")  # keep the processes' logs for a post-mortem
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(keep or tmp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
        port, api_port = free_port(), free_port()
        broker = start_broker(broker_kind, port, tmp / "kafka", tmp / "broker.log")
        url = f"chdb://{tmp / 'warehouse'}"
        settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=has_idempotence(broker_kind))
        env = dict(os.environ, KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
                   KAFKA_IDEMPOTENCE=str(settings.kafka_idempotence).lower(),
                   DATA_DIR=str(tmp / "data"), CLICKHOUSE_URL=url, API_PORT=str(api_port), LOG_FORMAT="json",
                   STREAMS_APP_ID=f"bench-{time.time_ns()}")
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            asyncio.run(ensure_topics(settings, system_topics(run.catalog)))
            procs["api"] = _spawn("api", env, tmp / "api.log")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            procs["worker"] = _spawn("worker", env, tmp / "worker.log")
            procs["alerter"] = _spawn("alerter", env, tmp / "alerter.log")
            log(f"latency: {rate_per_s:,.0f} readings/s for {seconds:.0f} s (+{warmup_s:.0f} s warm-up), "
                "every default rule active")
            t0 = time.monotonic()
            t_measure, t_end = t0 + warmup_s, t0 + warmup_s + seconds
            measure_from_ms = int(time.time() * 1000 + warmup_s * 1000)

            async def main() -> None:
                pids = {name: p.pid for name, p in procs.items()}
                await asyncio.gather(run.generate(settings, t_end, t_measure), run.watch_alerts(settings, t_end + 3),
                                     run.sample_rss(pids, t_end))

            asyncio.run(main())
            peak = {name: rss_mb(p.pid, "VmHWM") for name, p in procs.items()}
            for name in ("worker", "alerter", "api"):  # the API last: its sink flushes what is left
                procs[name].send_signal(signal.SIGTERM)
                procs[name].wait(60)
            stored = storage_latency(url, measure_from_ms)
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
            broker.terminate()
            broker.wait(10)
    rss = {name: memory_figures(v, peak.get(name, 0.0)) for name, v in run.rss.items() if v}
    return {"broker": broker_kind, "seconds": seconds, "target_readings_per_s": rate_per_s,
            "published_readings_per_s": round(run.published / (seconds + warmup_s)),
            "messages_per_s": round(run.messages / (seconds + warmup_s)),
            "event_to_alert_ms": percentiles(run.alert_ms),
            "slowest_alerts_ms_at_second": sorted(run.slowest, reverse=True)[:8],  # where in the minute the tail is
            "event_to_live_window_ms": percentiles(run.live_ms),
            "event_to_stored_ms": stored, "rss": rss}


if __name__ == "__main__":
    # a scaled run on a shared machine: BENCH_LATENCY_RATE=2500 BENCH_SOAK_S=300; the API's memory probe with
    # CONTROLROOM_TRACEMALLOC=/tmp/api-mem.jsonl (api/memprobe.py)
    print(orjson.dumps(bench_latency(float(os.environ.get("BENCH_SOAK_S", "60")),
                                     float(os.environ.get("BENCH_LATENCY_RATE", "10000")),
                                     broker_kind=os.environ.get("BENCH_BROKER", "tansu")),
                       option=orjson.OPT_INDENT_2).decode())
