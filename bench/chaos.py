"""`make chaos`: seeded randomized crash scenarios on the real parts (issue 11, item 5).

Each run, on a fresh broker (Tansu, or Apache Kafka with CHAOS_BROKER=kafka) and a fresh data dir (chDB
warehouse, Faust and alerter state):
- starts `controlroom api` (owns chDB, runs the sink: killing it kills the sink), `alerter`, `notifier`, and
  a little later `worker`, as separate processes, and subscribes a real HTTP receiver through the API;
- publishes at a steady rate (200–400 messages/s, aiokafka, lz4) readings of a few hundred feed × province
  series of the catalog, event time = publish wall time; about 10 % of the messages are JSON arrays of
  2–5 readings; 2 % of the readings are re-sent (identical) 0.3–5 s later; a few are deliberately late
  (30–90 s old, in windows that already closed); a few water-level series cross the run's threshold rule
  just before a minute boundary and come back to normal after it;
- meanwhile SIGKILLs the children at random moments (a Poisson process), the worker in its first seconds,
  the worker or the API right when windows close (minute boundary + 10–11 s), the worker just before the
  boundary and at the last close, and restarts each 0.3–2 s later (sometimes killing it again within its
  first seconds);
- stops publishing just before a minute boundary, waits until every window has closed and the tables stop
  changing (or fails the run after a timeout), stops the services, reads the warehouse, and judges it with
  bench/chaos_oracle.py.

Runs are scheduled on minute boundaries (a run's threshold crossings end one minute and resolve in the next),
so that two or three overlap: 20 runs take about 21 minutes. Each run is a child process (`python -m
bench.chaos run …`) with its own broker, ports and chDB.

    CHAOS_RUNS=20 CHAOS_SEED=<seed> make chaos   # seeds SEED, SEED+1, …
    CHAOS_SEED=<a failing run's seed> CHAOS_RUNS=1 make chaos   # that run again
    CHAOS_PARALLEL=3      # at most this many runs at once
    CHAOS_PROFILE=short   # the make-test runs (about 40 s of publishing) instead of the full ones (80 s)
    CHAOS_BROKER=kafka    # on Apache Kafka (idempotent producers; needs Java 17, `make kafka`) instead of Tansu
    CHAOS_KEEP=1          # keep every run's folder (logs, warehouse); by default a failing run keeps its logs

Prints a table per run and writes bench/results/chaos-<date>.json; exits 1 when any run violates the oracle.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import heapq
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/chaos.py` as well as `python -m bench.chaos`
    sys.path.insert(0, str(ROOT))

from bench import chaos_oracle as oracle  # noqa: E402
from controlroom.broker import free_port, has_idempotence, start_broker, stop_process  # noqa: E402
from controlroom.catalog import Catalog, Feed, default_catalog  # noqa: E402
from controlroom.kafka import ensure_topics, make_producer, system_topics  # noqa: E402
from controlroom.schema import agency_headers, dims_key, fingerprint, series_key  # noqa: E402
from controlroom.settings import Settings  # noqa: E402
from tests.integration.pipeline import settings_env  # noqa: E402
from tests.integration.receivers import Receiver, http_receiver  # noqa: E402

MIN_S = 60
SERVICES = ("api", "alerter", "notifier", "worker")
KILL_WEIGHTS = {"worker": 0.45, "api": 0.25, "alerter": 0.15, "notifier": 0.15}
RULE_ID = "chaos_level"
ALERT_FEED, ALERT_DIMS = "water_level", {"station": "s1"}
ALERT_ABOVE = 600.0  # normal readings of the alert series stay in 100–300, a crossing is 650–900
SUB_PATH = "/chaos"


def events_of(body: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(per-event idempotency key, {fingerprint, seq}) of every event a grouped notification delivers."""
    try:
        doc = orjson.loads(body)
        fingerprints = {a["alert_id"]: a["fingerprint"] for a in doc["alerts"]}
        return [(d["idempotency_key"], {"fingerprint": fingerprints[d["alert_id"]], "seq": d["seq"]})
                for d in doc["delivers"]]
    except (ValueError, KeyError, TypeError):  # not ours: the oracle counts what it can read
        return []
RESEND_WITHIN_MS = 8_000  # a re-sent reading goes out at most this long after its event time (lateness: 10 s)
RESULTS = ROOT / "bench" / "results"
# the sink checks each window this long after it closed (sinks/healer.py): short enough that a window the worker lost
# is healed (and counted) within the settle time
HEAL_AFTER_S = 30.0


@dataclass(frozen=True)
class Profile:
    """How long and how hard one run is. Times are relative to the run's minute boundary `b`: its alert
    series cross the threshold in [b-12, b-4] s and resolve with their first reading after b."""
    name: str
    lead_s: float  # the run is launched this long before b (broker, API, subscription, then publishing)
    before_s: float  # publishing starts at the latest this long before b (earlier when set-up is late)
    after_s: float  # and stops this long after b (< 60: the last window is [b, b+60))
    rate: tuple[float, float]  # messages per second, drawn per run
    series: int  # series in the random pool
    kill_every_s: float  # mean interval of the random kills
    alert_series: int
    last_close_kill: bool  # sometimes kill the worker at the last close (b + 75 s)
    settle_timeout_s: float = 60.0  # after the last window should have closed: then the run fails
    quiet_s: float = 10.0  # nothing changed this long after it (and not complete): judge what is there


# SHORT skips the last-close kill: a worker restarted after publishing stopped measures idleness from its own
# start, so with 40 s of silence before the last close its windows would close ~55 s after that restart.
FULL = Profile("full", lead_s=30, before_s=20, after_s=59.5, rate=(200, 400), series=600, kill_every_s=7.0,
               alert_series=3, last_close_kill=True)
SHORT = Profile("short", lead_s=36, before_s=20, after_s=20, rate=(200, 300), series=300, kill_every_s=8.0,
                alert_series=2, last_close_kill=False)
PROFILES = {p.name: p for p in (FULL, SHORT)}


def log(seed: int | None, msg: str) -> None:
    print(f"[chaos{'' if seed is None else f' {seed}'}] {msg}", file=sys.stderr, flush=True)


def next_boundary(t: float) -> float:
    """The first minute boundary at or after t (epoch seconds)."""
    return float(math.ceil(t / MIN_S) * MIN_S)


# --- the plan: everything a seed decides ------------------------------------------------------------------

@dataclass(frozen=True)
class Kill:
    at: float  # epoch seconds
    target: str
    restart_after_s: float
    why: str  # random | first-seconds | window-close | last-close | after-restart


def alert_rules_yaml(provinces: list[str]) -> str:
    """One threshold rule on the alert series only, no repeats or escalations: its events are exactly
    firing (seq 1) and resolved (seq 2) per series."""
    return "\n".join([
        "rules:",
        f"  - id: {RULE_ID}",
        "    version: 1",
        "    type: threshold",
        f"    feed: {ALERT_FEED}",
        "    severity: warning",
        f"    provinces: [{', '.join(repr(p) for p in provinces)}]",
        f"    dims: {json.dumps(ALERT_DIMS)}",
        "    repeat_interval_s: null",
        "    escalate_after_s: null",
        f"    params: {{metric: max, above: {ALERT_ABOVE}}}",
        "    summary: {vi: 'Chaos {province_vi} {value:.0f}', en: 'Chaos {province_en} {value:.0f}'}",
        "",
    ])


def plan_kills(rng: random.Random, profile: Profile, p0: float, b: float, worker_start: float) -> list[Kill]:
    """The run's kills: random (Poisson) over the publishing, the worker in its first seconds, at the window
    close after b (b + 10–11 s: watermark = newest event − 10 s), just before b, and at the last close
    (b + 75 s: the idle watermark follows the clock 15 s behind)."""
    def delay() -> float:
        return rng.uniform(0.3, 2.0)

    kills = [Kill(worker_start + rng.uniform(1.5, 6.0), "worker", delay(), "first-seconds")]
    t, end = p0 + 1.0, b + profile.after_s + 2.0
    names, weights = list(KILL_WEIGHTS), list(KILL_WEIGHTS.values())
    while True:
        t += rng.expovariate(1.0 / profile.kill_every_s)
        if t >= end:
            break
        kills.append(Kill(t, rng.choices(names, weights)[0], delay(), "random"))
    for close in (b - MIN_S + 10.0, b + 10.0):
        if close > p0 + 2.0 and rng.random() < 0.85:
            kills.append(Kill(close + rng.uniform(0.0, 1.2), "worker" if rng.random() < 0.7 else "api", delay(),
                              "window-close"))
    if rng.random() < 0.5:  # its backlog then spans the boundary: the close at b + 10 s meets a restored state
        kills.append(Kill(b - rng.uniform(0.0, 3.0), "worker", delay(), "across-boundary"))
    if profile.last_close_kill and rng.random() < 0.5:
        kills.append(Kill(b + MIN_S + 15.0 + rng.uniform(0.0, 1.0), "worker", delay(), "last-close"))
    return sorted(kills, key=lambda k: k.at)


# --- the processes ------------------------------------------------------------------------------------------

class Proc:
    """One service as a child process; killed only by its own pid (SIGKILL), restarted with the same command."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self.env, self.log_path = name, env, log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.kills = 0
        self.restarts = 0
        self.crashes: list[tuple[float, int]] = []  # (time, exit code) of exits we did not cause
        self.down = False  # killed by us, restart pending

    def spawn(self) -> None:
        with self.log_path.open("ab") as out:
            out.write(f"\n=== start {time.time():.3f}\n".encode())
            out.flush()
            self.proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", self.name], env=self.env,
                                         cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.spawned_at = time.time()
        self.down = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> bool:
        if not self.running or self.proc is None:
            return False
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1
        self.down = True
        return True

    def stop(self, timeout_s: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


# --- publishing ---------------------------------------------------------------------------------------------

Series = tuple[Feed, str, dict[str, str]]


@dataclass
class Published:
    readings: dict[str, tuple[str, str, str, int, float]] = field(default_factory=dict)  # id -> series, ts, value
    late: set[str] = field(default_factory=set)
    messages: int = 0
    arrays: int = 0
    resent: int = 0
    send_errors: int = 0


class Publisher:
    """Readings at a steady message rate, event time = the wall clock when each is made."""

    def __init__(self, seed: int, catalog: Catalog, profile: Profile, alert_provinces: list[str]) -> None:
        self.seed = seed
        self.catalog = catalog  # each message is sent as its series' supplier (header `agency`)
        self.rng = random.Random(f"{seed}:publish")
        self.alert_series = [(catalog.feeds[ALERT_FEED], p, dict(ALERT_DIMS)) for p in alert_provinces]
        alert_keys = {series_key(ALERT_FEED, p, dims_key(ALERT_DIMS)) for p in alert_provinces}
        everything = [s for s in catalog.iter_series() if series_key(s[0].id, s[1], dims_key(s[2])) not in alert_keys]
        self.pool: list[Series] = self.rng.sample(everything, min(profile.series, len(everything)))
        self.alert_keys = alert_keys
        self.rate = self.rng.uniform(*profile.rate)
        self.out = Published()
        self.last_ts: dict[str, int] = {}
        self.used_ts: dict[str, set[int]] = {}
        self.resend: list[tuple[float, int, int, str, bytes, bytes]] = []  # due, tiebreak, ts, …
        self.pending: list[tuple[Any, list[str]]] = []  # send futures and the ids they carry
        self.n = 0

    def value(self, feed: Feed) -> float:
        span = feed.valid_max - feed.valid_min
        v = feed.valid_min + span * self.rng.uniform(0.001, 0.05)
        return float(round(v)) if feed.kind == "counter" else round(v, 2)

    def reading(self, feed: Feed, province: str, dims: dict[str, str], ts: int, value: float) -> tuple[str, bytes]:
        self.n += 1
        eid = f"c{self.seed}-{self.n}"
        skey = series_key(feed.id, province, dims_key(dims))
        self.used_ts.setdefault(skey, set()).add(ts)
        self.out.readings[eid] = (feed.id, province, dims_key(dims), ts, value)
        doc = {"event_id": eid, "feed": feed.id, "province": province, "ts": ts, "value": value, "dims": dims,
               "source": "chaos"}
        return eid, orjson.dumps(doc)

    def on_time(self, s: Series, now_ms: int) -> int:
        """Now, or just after this series' previous reading: event times of one series never tie."""
        skey = series_key(s[0].id, s[1], dims_key(s[2]))
        ts = max(now_ms, self.last_ts.get(skey, 0) + 1)
        self.last_ts[skey] = ts
        return ts

    def late_ts(self, s: Series, now_ms: int) -> int:
        """30–90 s ago, in a window that closed at least 5 s ago (watermark ≈ now − 10 s), not tying a reading."""
        used = self.used_ts.get(series_key(s[0].id, s[1], dims_key(s[2])), set())
        while True:
            ts = now_ms - self.rng.randint(30_000, 90_000)
            if ts - ts % 60_000 + 60_000 <= now_ms - 15_000 and ts not in used:
                return ts

    async def send(self, producer: Any, topic: str, key: bytes, value: bytes, ids: list[str]) -> None:
        headers = agency_headers(self.catalog, topic, key)  # sent as the series' supplier
        self.pending.append((await producer.send(topic, value, key=key, headers=headers), ids))
        self.out.messages += 1

    async def message(self, producer: Any, now_ms: int, allow_late: bool) -> None:
        rng = self.rng
        feed, province, dims = rng.choice(self.pool)
        if allow_late and rng.random() < 0.004:
            ts = self.late_ts((feed, province, dims), now_ms)
            eid, body = self.reading(feed, province, dims, ts, self.value(feed))
            self.out.late.add(eid)
            await self.send(producer, feed.topic, province.encode(), body, [eid])
            return
        docs: list[tuple[str, bytes]] = []
        if rng.random() < 0.10:  # a batching source: one message, several readings of one feed and province
            combos = [d for d in feed.dim_combinations()
                      if series_key(feed.id, province, dims_key(d)) not in self.alert_keys]
            for _ in range(rng.randint(2, 5)):
                d = rng.choice(combos)
                ts = self.on_time((feed, province, d), now_ms)
                docs.append(self.reading(feed, province, d, ts, self.value(feed)))
            body = b"[" + b",".join(b for _, b in docs) + b"]"
            self.out.arrays += 1
        else:
            docs.append(self.reading(feed, province, dims, self.on_time((feed, province, dims), now_ms),
                                     self.value(feed)))
            body = docs[0][1]
        await self.send(producer, feed.topic, province.encode(), body, [eid for eid, _ in docs])
        for _eid, one in docs:
            if rng.random() < 0.02:  # re-sent a little later, identical: within the allowed lateness
                heapq.heappush(self.resend, (now_ms / 1000 + rng.uniform(0.3, 5.0), self.n, now_ms, feed.topic,
                                             province.encode(), one))

    async def run(self, producer: Any, t_stop: float, spikes: dict[str, float]) -> None:
        """Until t_stop (epoch s). `spikes`: alert province -> when its reading above the threshold goes out."""
        start, sent = time.time(), 0
        next_alert = {p: start + self.rng.uniform(0.0, 1.5) for p in spikes}
        spiked: set[str] = set()
        while (now := time.time()) < t_stop:
            now_ms = int(now * 1000)
            due = int((now - start) * self.rate) - sent
            for _ in range(due):
                await self.message(producer, now_ms, allow_late=now - start > 5.0)
            sent += due
            while self.resend and self.resend[0][0] <= now:
                _, _, ts, topic, key, body = heapq.heappop(self.resend)
                if now_ms - ts <= RESEND_WITHIN_MS:  # a stalled loop must not make a re-send late
                    await self.send(producer, topic, key, body, [])
                    self.out.resent += 1
            for s in self.alert_series:
                province = s[1]
                crossing = province not in spiked and now >= spikes[province]
                if crossing or now >= next_alert[province]:
                    value = self.rng.uniform(650.0, 900.0) if crossing else self.rng.uniform(100.0, 300.0)
                    eid, body = self.reading(s[0], province, s[2], self.on_time(s, now_ms), round(value, 1))
                    await self.send(producer, s[0].topic, province.encode(), body, [eid])
                    if crossing:
                        spiked.add(province)
                    next_alert[province] = now + self.rng.uniform(1.0, 2.0)
            self.reap()
            await asyncio.sleep(0.01)
        await producer.flush()
        self.reap(final=True)

    def reap(self, final: bool = False) -> None:
        """A send the broker refused: its readings were not published (counted, and left out of the oracle)."""
        keep = []
        for fut, ids in self.pending:
            if not fut.done() and not final:
                keep.append((fut, ids))
                continue
            if not fut.done() or fut.cancelled() or fut.exception() is not None:
                self.out.send_errors += 1
                for eid in ids:
                    self.out.readings.pop(eid, None)
                    self.out.late.discard(eid)
        self.pending = keep


# --- one run -------------------------------------------------------------------------------------------------

@dataclass
class Snapshot:
    raw: int
    agg: int
    agg_rows: int
    agg_inserted: int
    late: int
    alerts: int
    hits: int
    sink_recomputed: int = -1  # the embedded sink's own counters (GET /healthz); -1 when unknown
    sink_waiting: int = -1  # windows closed whose raw readings the sink has not stored yet
    sink_unchecked: int = -1  # windows of stored readings the sink has not checked yet (sinks/healer.py)

    def key(self) -> tuple[int, ...]:
        return (self.raw, self.agg, self.agg_rows, self.agg_inserted, self.late, self.alerts, self.hits,
                self.sink_recomputed, self.sink_waiting, self.sink_unchecked)


class Scenario:
    def __init__(self, seed: int, profile: Profile, boundary: float, work: Path, broker: str = "tansu") -> None:
        self.seed, self.profile, self.hint, self.work, self.broker_kind = seed, profile, boundary, work, broker
        self.catalog = default_catalog()
        self.rng = random.Random(f"{seed}:plan")
        provinces = sorted(self.catalog.provinces)
        self.alert_provinces = sorted(self.rng.sample(provinces, profile.alert_series))
        self.publisher = Publisher(seed, self.catalog, profile, self.alert_provinces)
        self.procs: dict[str, Proc] = {}
        self.kill_log: list[tuple[float, str, str, bool]] = []  # (t − b, target, why, done)
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.b = boundary
        self.t_launch = time.time()
        self.timings: dict[str, float] = {}
        self.admin_key = ""
        self.broker: subprocess.Popen[bytes] | None = None
        self.restart_tasks: list[asyncio.Task[None]] = []
        self.topics: dict[str, list[dict[str, Any]]] | None = None  # dumped after the run (diagnostics)
        again = random.Random(f"{seed}:again")  # per restart: killed again in its first seconds (15 %)?
        self.again = {n: [(again.random() < 0.15, again.uniform(1.0, 4.0), again.uniform(0.3, 2.0))
                          for _ in range(40)] for n in SERVICES}
        self.expected: list[oracle.ExpectedEvent] = [
            e for p in self.alert_provinces for e in (
                oracle.ExpectedEvent(fingerprint(RULE_ID, ALERT_FEED, p, dims_key(ALERT_DIMS)), 1, "firing", "firing"),
                oracle.ExpectedEvent(fingerprint(RULE_ID, ALERT_FEED, p, dims_key(ALERT_DIMS)), 2, "resolved",
                                     "resolved"))]

    def say(self, msg: str) -> None:
        log(self.seed, f"{time.time() - self.b:+6.1f}s {msg}")

    # -- set-up --

    def settings(self, broker_port: int, api_port: int, signing_key: str) -> Settings:
        rules = self.work / "rules.yaml"
        rules.write_text(alert_rules_yaml(self.alert_provinces))
        return Settings(
            kafka_bootstrap=f"127.0.0.1:{broker_port}", kafka_idempotence=has_idempotence(self.broker_kind),
            data_dir=self.work / "data",
            clickhouse_url=SecretStr(f"chdb://{self.work / 'warehouse'}"), api_port=api_port, alert_rules_file=rules,
            notify_signing_key=SecretStr(signing_key), log_format="json", streams_app_id=f"chaos-{self.seed}",
            streams_report_s=2.0,  # its progress line says how many windows it still holds open
            sink_heal_after_s=HEAL_AFTER_S)

    async def setup(self, receiver: Receiver) -> Settings:
        from api.keys_cli import bootstrap_admin_key

        broker_port, api_port = free_port(), free_port()
        self.broker = await asyncio.to_thread(start_broker, self.broker_kind, broker_port, self.work / "kafka",
                                              self.work / "broker.log")
        settings = self.settings(broker_port, api_port, random.Random(f"{self.seed}:key").randbytes(32).hex())
        await ensure_topics(settings, system_topics(self.catalog))
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_key = await asyncio.to_thread(bootstrap_admin_key, settings)  # migrates chDB, as `make up`
        env = settings_env(settings)
        for name in SERVICES:
            self.procs[name] = Proc(name, env, self.work)
        for name in ("api", "alerter", "notifier"):  # the worker starts once a backlog is there
            self.procs[name].spawn()
        async with self.client(settings) as http:
            deadline = time.time() + 90.0
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                if time.time() > deadline or not self.procs["api"].running:
                    raise RuntimeError(f"the API did not start (see {self.procs['api'].log_path})")
                await asyncio.sleep(0.3)
            r = await http.post("/subscriptions", json={
                "name": "chaos receiver", "channel": "webhook", "target": receiver.url(SUB_PATH),
                "filters": {"feeds": [ALERT_FEED]}, "group_wait_s": 1, "group_interval_s": 2})
            if r.status_code != 201:
                raise RuntimeError(f"POST /subscriptions answered {r.status_code}: {r.text[:300]}")
        return settings

    def client(self, settings: Settings) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10.0,
                                 headers={"Authorization": f"Bearer {self.admin_key}"})

    # -- chaos --

    def do_kill(self, k: Kill) -> None:
        p = self.procs[k.target]
        done = p.kill()
        self.kill_log.append((round(time.time() - self.b, 2), k.target, k.why, done))
        if done:
            self.restart_tasks.append(asyncio.create_task(self.restart_later(p, k.restart_after_s)))

    async def restart_later(self, p: Proc, after_s: float) -> None:
        await asyncio.sleep(after_s)
        p.spawn()
        p.restarts += 1
        again = self.again[p.name]
        coin, within, delay = again.pop() if again else (False, 0.0, 0.0)
        if coin:  # killed again in its first seconds
            await asyncio.sleep(within)
            self.do_kill(Kill(time.time(), p.name, delay, "after-restart"))

    async def chaos(self, kills: list[Kill], worker_start: float) -> None:
        events: list[tuple[float, Kill | None]] = sorted([(worker_start, None), *[(k.at, k) for k in kills]],
                                                         key=lambda e: e[0])
        for at, k in events:
            await asyncio.sleep(max(0.0, at - time.time()))
            if k is None:
                self.procs["worker"].spawn()
            else:
                self.do_kill(k)
        while any(not t.done() for t in self.restart_tasks):
            await asyncio.sleep(0.1)

    async def watch(self, stop: asyncio.Event) -> None:
        """A child that exits without being killed is a crash: noted, and restarted so the run can finish."""
        while not stop.is_set():
            for p in self.procs.values():
                if p.proc is not None and not p.down and p.proc.poll() is not None:
                    p.crashes.append((round(time.time() - self.b, 2), p.proc.returncode))
                    self.say(f"{p.name} exited by itself with code {p.proc.returncode}; restarting it")
                    p.down = True
                    asyncio.get_running_loop().call_later(1.0, p.spawn)
            await asyncio.sleep(0.2)

    # -- settling --

    def close_due(self, settings: Settings) -> float:
        """When the last window should have closed: its end + the allowed lateness + the idle delay (an idle
        partition's watermark follows the clock that far behind). A worker (re)started after the last reading
        measures idleness from its own start, so the silence before the window end counts again from there."""
        newest = max(r[3] for r in self.publisher.out.readings.values()) / 1000
        end = (newest // MIN_S + 1) * MIN_S
        delay = settings.allowed_lateness_s + settings.idle_advance_after_s
        restarted = self.procs["worker"].spawned_at
        return max(end + delay, restarted + (end - newest) + delay if restarted > newest else 0.0)

    async def snapshot(self, http: httpx.AsyncClient, receiver: Receiver, db: str) -> Snapshot | None:
        sql = (f"SELECT (SELECT count() FROM {db}.readings FINAL) AS raw, "
               f"(SELECT sum(count) FROM {db}.agg_1m FINAL) AS agg, (SELECT count() FROM {db}.agg_1m FINAL) AS rows, "
               f"(SELECT count() FROM {db}.agg_1m) AS inserted, "
               f"(SELECT count() FROM {db}.late_readings FINAL) AS late, "
               f"(SELECT count() FROM {db}.alert_events FINAL) AS alerts")
        try:
            r = await http.post("/query", json={"sql": sql})
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        raw, agg, rows, inserted, late, alerts = (int(v or 0) for v in r.json()["rows"][0])
        recomputed = waiting = unchecked = -1
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
            sink = (await http.get("/healthz")).json()["sink"] or {}
            recomputed, waiting = int(sink.get("recomputed", -1)), int(sink.get("waiting_triggers", -1))
            unchecked = int(sink.get("unchecked", -1))
        return Snapshot(raw, agg, rows, inserted, late, alerts, len(receiver.at(SUB_PATH)), recomputed, waiting,
                        unchecked)

    def delivered(self, receiver: Receiver) -> set[tuple[str, int]]:
        return {(str(a["fingerprint"]), int(a["seq"])) for h in receiver.at(SUB_PATH) for _, a in events_of(h.body)}

    def worker_open_windows(self) -> tuple[float, int] | None:
        """(when, open windows) from the running worker's latest progress line, None before its first."""
        try:
            with self.procs["worker"].log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - (256 << 10)))
                tail = f.read().decode(errors="replace").rsplit("\n=== start ", 1)
        except OSError:
            return None
        if len(tail) < 2:  # the current run of the worker started before this tail: no marker seen
            return None
        for line in reversed(tail[1].splitlines()):
            if '"streams progress"' in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    doc = json.loads(line)
                    when = dt.datetime.fromisoformat(str(doc["timestamp"]).replace("Z", "+00:00")).timestamp()
                    return when, int(doc["open_windows"])
        return None

    async def settle(self, settings: Settings, receiver: Receiver, close_due: float) -> None:
        """After `close_due`: until complete (every reading stored and aggregated, every alert event and
        notification there) and 3 s quiet; or until the worker says it holds no open window, the sink waits for
        no window's raw readings and the tables and the sink's counters stay quiet `quiet_s` (the oracle then
        tells what is missing: a loss, not slowness). A worker still holding windows, or a sink still waiting,
        `settle_timeout_s` after `close_due` fail the run; while the tables or the sink still move (a loaded
        machine), settling goes on up to twice that."""
        pub = self.publisher.out
        deadline = close_due + self.profile.settle_timeout_s
        hard_cap = close_due + 2 * self.profile.settle_timeout_s
        last: tuple[int, ...] | None = None
        since = time.time()
        snap: Snapshot | None = None
        async with self.client(settings) as http:
            while True:
                now = time.time()
                snap = await self.snapshot(http, receiver, settings.clickhouse_database) or snap
                key = snap.key() if snap else None
                if key != last:
                    last, since = key, now
                quiet = now - max(since, close_due)
                progress = self.worker_open_windows()
                drained = progress is not None and progress[0] >= close_due and progress[1] == 0
                if now >= close_due and snap is not None:
                    complete = (snap.raw == len(pub.readings) and snap.agg == snap.raw
                                and snap.alerts >= len(self.expected)
                                and {(e.fingerprint, e.seq) for e in self.expected} <= self.delivered(receiver))
                    # -1: an API without the counter, judged as before
                    sink_idle = snap.sink_waiting <= 0 and snap.sink_unchecked <= 0
                    if (complete and quiet >= 3.0) or (drained and sink_idle and quiet >= self.profile.quiet_s):
                        self.timings["settled_after_close_s"] = round(now - close_due, 1)
                        if not complete:
                            self.notes.append(f"settled incomplete after {now - close_due:.0f} s, the worker "
                                              f"drained, the sink waiting for nothing: {snap}")
                        return
                moving = quiet < self.profile.quiet_s
                if now > deadline and not (moving and now < hard_cap):
                    held = f"the worker still holds {progress[1]} open windows" if progress else "no worker progress"
                    waits = (f"the sink still waits for the raw readings of {snap.sink_waiting} windows"
                             if snap is not None and snap.sink_waiting > 0 else "the sink waits for nothing")
                    self.violations.append(
                        f"settle: not settled {now - close_due:.0f} s after the last window should have "
                        f"closed ({held}; {waits}; tables {'still changing' if moving else 'quiet'}; "
                        f"last snapshot {snap}; published {len(pub.readings)} readings)")
                    return
                await asyncio.sleep(1.0)

    # -- the warehouse --

    def fetch(self, settings: Settings) -> dict[str, Any]:
        from controlroom.warehouse import open_warehouse

        wh = open_warehouse(settings)
        try:
            db = wh.database
            late_cols = {r["name"] for r in wh.query(
                "SELECT name FROM system.columns WHERE database = {db:String} AND table = 'late_readings'", {"db": db})}
            has_status = "status" in late_cols
            return {
                "raw": wh.query(f"SELECT event_id, feed, province, dims_key, toUnixTimestamp64Milli(ts) AS ts, value "
                                f"FROM {db}.readings FINAL"),
                "agg": wh.query(f"SELECT feed, province, dims_key, source_partition, "
                                f"toUnixTimestamp64Milli(window_start) AS window_start, count, sum, min, max, last, "
                                f"toUnixTimestamp64Milli(last_ts) AS last_ts FROM {db}.agg_1m FINAL"),
                "late": wh.query(f"SELECT event_id{', status' if has_status else ''} FROM {db}.late_readings FINAL"),
                "has_status": has_status,
                "alerts": wh.query(f"SELECT alert_id, seq, fingerprint, event, state FROM {db}.alert_events"),
            }
        finally:
            wh.close()

    async def dump_topics(self, settings: Settings) -> dict[str, list[dict[str, Any]]]:
        """Every record of agg.1m, feeds.late and the worker's changelog, read to the end (polled until quiet:
        Tansu's end offsets are not trusted); also written to `topics.jsonl` in the run's folder."""
        from aiokafka import TopicPartition

        from controlroom.kafka import make_consumer
        from controlroom.schema import AGG_TOPIC, LATE_TOPIC

        consumer = make_consumer(settings)
        await consumer.start()
        out: dict[str, list[dict[str, Any]]] = {}
        try:
            names = sorted(t for t in await consumer.topics()
                           if t in (AGG_TOPIC, LATE_TOPIC) or t.endswith("-changelog"))
            tps = [TopicPartition(t, p) for t in names for p in sorted(consumer.partitions_for_topic(t) or ())]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            out = {t: [] for t in names}
            empty = 0
            while empty < 3:
                polled = await consumer.getmany(timeout_ms=1000, max_records=20_000)
                if not any(polled.values()):
                    empty += 1
                    continue
                empty = 0
                for tp, recs in polled.items():
                    out[tp.topic].extend(
                        {"topic": tp.topic, "partition": tp.partition, "offset": r.offset,
                         "key": None if r.key is None else r.key.decode(errors="replace"),
                         "value": None if r.value is None else r.value.decode(errors="replace")} for r in recs)
        finally:
            await consumer.stop()
        with (self.work / "topics.jsonl").open("w") as f:
            for recs in out.values():
                for r in recs:
                    f.write(json.dumps(r) + "\n")
        return out

    def sink_waiting(self) -> list[dict[str, Any]]:
        """The triggers the embedded sink still held when it stopped (its last log line says), [] when none."""
        try:
            lines = self.procs["api"].log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        for line in reversed(lines):
            if "windows waiting for their raw readings" in line:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    return list(json.loads(line)["triggers"])
            if '"sink stopped"' in line:
                return []
        return []

    def healed_by_sink(self) -> dict[str, int]:
        """Windows the embedded sink recomputed itself, over every API incarnation (its warning lines): windows the
        worker had not closed `HEAL_AFTER_S` after the sink saw them closed — lost, or late behind its restarts —
        and how many of them the worker closed afterwards after all (late, not lost), as far as the incarnations
        that stopped cleanly (their last line) say."""
        try:
            lines = self.procs["api"].log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {"healed": 0, "closed_later": 0}
        healed = later = 0
        for line in lines:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                if "windows recomputed by the sink" in line:
                    healed += int(json.loads(line)["windows"])
                elif '"sink stopped"' in line:
                    later += int(json.loads(line).get("healed_then_closed", 0))
        return {"healed": healed, "closed_later": later}

    # -- the whole run --

    async def run(self) -> dict[str, Any]:
        settings: Settings | None = None
        stop_watch = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        rows: dict[str, Any] | None = None
        hits: list[tuple[str, dict[str, Any]]] = []
        with http_receiver() as receiver:
            try:
                settings = await self.setup(receiver)
                self.timings["setup_s"] = round(time.time() - self.t_launch, 1)
                watcher = asyncio.create_task(self.watch(stop_watch))
                now = time.time()
                if now > self.hint - 15.0:
                    self.b = next_boundary(now + 15.0)
                    self.notes.append(f"set-up took {self.timings['setup_s']} s: boundary moved to the next minute")
                await asyncio.sleep(max(0.0, self.b - self.profile.before_s - time.time()))
                p0 = time.time()
                self.say(f"publishing at {self.publisher.rate:.0f} msg/s, {len(self.publisher.pool)} series, "
                         f"alert series in {self.alert_provinces}")
                worker_start = p0 + self.rng.uniform(0.5, 2.5)
                kills = plan_kills(self.rng, self.profile, p0, self.b, worker_start)
                spikes = {p: self.b - self.rng.uniform(4.0, 12.0) for p in self.alert_provinces}
                t_stop = self.b + self.profile.after_s
                producer = make_producer(settings)
                await producer.start()
                try:
                    await asyncio.gather(self.publisher.run(producer, t_stop, spikes),
                                         self.chaos(kills, worker_start))
                finally:
                    await producer.stop()
                self.timings["publish_s"] = round(t_stop - p0, 1)
                close_due = self.close_due(settings)
                self.say(f"published {len(self.publisher.out.readings)} readings in {self.publisher.out.messages} "
                         f"messages; {sum(p.kills for p in self.procs.values())} kills; settling")
                await self.settle(settings, receiver, close_due + 2.0)
                stop_watch.set()
                await watcher
                for name in ("worker", "alerter", "notifier", "api"):  # the API last: its sink flushes
                    self.procs[name].stop(30.0)
                rows = await asyncio.to_thread(self.fetch, settings)
                try:  # what the worker emitted, for the post-mortem of aggregates missing (the broker keeps nothing)
                    self.topics = await self.dump_topics(settings)
                except Exception as exc:  # noqa: BLE001 (a diagnostic only)
                    self.notes.append(f"topic dump failed: {type(exc).__name__}: {exc}")
                for h in receiver.at(SUB_PATH):
                    hits.extend(events_of(h.body))
            except Exception as exc:  # noqa: BLE001 (a harness failure is a failed run, with its reason)
                self.violations.append(f"harness: {type(exc).__name__}: {exc}")
            finally:
                stop_watch.set()
                if watcher is not None and not watcher.done():
                    watcher.cancel()
                for p in self.procs.values():
                    p.stop(5.0)
                if self.broker is not None:
                    stop_process(self.broker, timeout_s=10)
        return self.judge(rows, hits)

    def judge(self, rows: dict[str, Any] | None, hits: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
        pub = self.publisher.out
        result: dict[str, Any] = {
            "seed": self.seed, "profile": self.profile.name, "broker": self.broker_kind,
            "boundary": dt.datetime.fromtimestamp(self.b, dt.UTC).isoformat(),
            "rate_msgs_per_s": round(self.publisher.rate), "series": len(self.publisher.pool),
            "alert_provinces": self.alert_provinces, "readings": len(pub.readings), "messages": pub.messages,
            "array_messages": pub.arrays, "resent": pub.resent, "deliberately_late": len(pub.late),
            "send_errors": pub.send_errors,
            "kills": {n: p.kills for n, p in self.procs.items()},
            "kill_log": [{"t_from_boundary_s": t, "target": n, "why": w, "killed": d} for t, n, w, d in self.kill_log],
            "crashes": {n: p.crashes for n, p in self.procs.items() if p.crashes},
            **self.timings, "notes": self.notes,
        }
        violations = list(self.violations)
        if rows is not None:
            raw = oracle.check_raw(pub.readings, [r["event_id"] for r in rows["raw"]])
            agg = oracle.compare_aggregates(oracle.recompute(rows["raw"]), oracle.stored_aggregates(rows["agg"]))
            late = oracle.check_late(rows["late"], pub.late, has_status=rows["has_status"])
            alerts = oracle.check_alerts(self.expected, rows["alerts"])
            notify = oracle.check_notifications(self.expected, hits)
            if not late.status_checked:
                self.notes.append("late_readings has no status column: the 'amended' sub-check was skipped")
            for part in (raw, agg, late, alerts, notify):
                violations.extend(part.violations())
            healed = self.healed_by_sink()
            lost_when = Counter(int((pub.readings[e][3] / 1000 - self.b) // 10 * 10) for e in raw.lost)
            result.update({
                "raw": {"stored_rows": raw.stored_rows, "lost": len(raw.lost), "duplicated": raw.extra_rows,
                        "lost_by_10s_from_boundary": {f"{k:+d}s": n for k, n in sorted(lost_when.items())}},
                "agg": {"series_minutes": agg.series_minutes, "mismatched": len(agg.mismatched),
                        "missing_minutes": len(agg.missing_minutes), "excess_minutes": len(agg.excess_minutes),
                        "missing_readings": agg.missing_readings, "excess_readings": agg.excess_readings,
                        "healed_by_sink": healed["healed"], "healed_closed_later": healed["closed_later"],
                        **({"missing_explained": oracle.explain_missing(
                            agg.missing_minutes, self.topics, self.sink_waiting())}
                           if agg.missing_minutes and self.topics is not None else {})},
                "late": {"rows": late.late_rows, "falsely_late": len(late.falsely_late),
                         "not_amended": len(late.not_amended), "status_checked": late.status_checked},
                "alerts": {"expected": alerts.expected, "stored": alerts.stored, "violations": alerts.count},
                "notify": {"expected": notify.expected, "requests": notify.requests, "violations": notify.count,
                           "redelivered": notify.redelivered},
            })
        result["duration_s"] = round(time.time() - self.t_launch, 1)
        result["violations"] = violations
        result["ok"] = not violations
        return result


def run_one(seed: int, profile: Profile, boundary: float, work: Path, broker: str = "tansu") -> dict[str, Any]:
    return asyncio.run(Scenario(seed, profile, boundary, work, broker).run())


# --- many runs ------------------------------------------------------------------------------------------------

@dataclass
class Launched:
    seed: int
    proc: subprocess.Popen[bytes]
    out: Path
    work: Path
    started: float
    deadline: float


def launch(seed: int, profile: Profile, boundary: float, base: Path, broker: str) -> Launched:
    work = Path(tempfile.mkdtemp(prefix=f"chaos-{seed}-", dir=base))
    out = work / "result.json"
    proc = subprocess.Popen([sys.executable, "-m", "bench.chaos", "run", "--seed", str(seed), "--profile",
                             profile.name, "--boundary", str(boundary), "--dir", str(work), "--out", str(out),
                             "--broker", broker],
                            cwd=ROOT, start_new_session=True)  # its own group: an abort stops its services too
    budget = profile.lead_s + MIN_S + 15 + 2 * profile.settle_timeout_s + 180
    return Launched(seed, proc, out, work, time.time(), time.time() + budget)


def collect(run: Launched, keep: bool) -> dict[str, Any]:
    try:
        result: dict[str, Any] = json.loads(run.out.read_text())
    except (OSError, ValueError):
        result = {"seed": run.seed, "ok": False, "duration_s": round(time.time() - run.started, 1),
                  "violations": [f"harness: the run exited with code {run.proc.returncode} and no result "
                                 f"(logs in {run.work})"]}
        keep = True
    if keep:
        result["dir"] = str(run.work)
    elif not result.get("ok"):  # the logs stay for the post-mortem, the warehouse and state go
        for heavy in ("warehouse", "data"):
            shutil.rmtree(run.work / heavy, ignore_errors=True)
        result["dir"] = str(run.work)
    else:
        shutil.rmtree(run.work, ignore_errors=True)
    return result


def reproduce(seed: int, broker: str) -> str:
    return f"{'CHAOS_BROKER=kafka ' if broker == 'kafka' else ''}CHAOS_SEED={seed} CHAOS_RUNS=1 make chaos"


def run_many(seeds: list[int], profile: Profile, parallel: int, per_slot: int = 1,
             keep: bool = False, broker: str = "tansu") -> list[dict[str, Any]]:
    """Launch the runs on minute boundaries (`per_slot` per boundary, at most `parallel` at once)."""
    base = Path(tempfile.mkdtemp(prefix="chaos-"))
    pending, results = list(seeds), []
    active: list[Launched] = []
    slot = next_boundary(time.time() + profile.lead_s)
    in_slot = 0
    try:
        while pending or active:
            for run in [r for r in active if r.proc.poll() is not None or time.time() > r.deadline]:
                if run.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(run.proc.pid, signal.SIGKILL)
                    run.proc.wait()
                active.remove(run)
                results.append(collect(run, keep))
                print_row(results[-1])
            if pending and time.time() >= slot - profile.lead_s:
                if len(active) < parallel and in_slot < per_slot:
                    seed = pending.pop(0)
                    log(None, f"run seed={seed}: boundary {dt.datetime.fromtimestamp(slot, dt.UTC):%H:%M:%S}Z "
                              f"(reproduce: {reproduce(seed, broker)})")
                    active.append(launch(seed, profile, slot, base, broker))
                    in_slot += 1
                else:
                    slot, in_slot = slot + MIN_S, 0
            time.sleep(0.2)
    finally:
        for run in active:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            base.rmdir()  # only when empty: kept runs stay
    return sorted(results, key=lambda r: seeds.index(r["seed"]))


# --- output -----------------------------------------------------------------------------------------------------

HEADER = ("seed", "readings", "kills w/api/al/n", "raw lost/dup", "agg bad min (short/over)", "healed", "falsely late",
          "alerts", "notify", "settle s", "duration s", "verdict")


def row_cells(r: dict[str, Any]) -> tuple[str, ...]:
    k = r.get("kills", {})
    agg, raw, late = r.get("agg"), r.get("raw"), r.get("late")
    return (
        str(r["seed"]), f"{r.get('readings', 0):,}",
        "/".join(str(k.get(n, 0)) for n in ("worker", "api", "alerter", "notifier")),
        f"{raw['lost']}/{raw['duplicated']}" if raw else "-",
        (f"{agg['mismatched'] + agg['missing_minutes'] + agg['excess_minutes']} "
         f"({agg['missing_readings']}/{agg['excess_readings']})") if agg else "-",
        f"{agg.get('healed_by_sink', '-')} ({agg.get('healed_closed_later', '-')} late)" if agg else "-",
        (f"{late['falsely_late']}" + (f" +{late['not_amended']} not amended" if late["not_amended"] else ""))
        if late else "-",
        str(r["alerts"]["violations"]) if "alerts" in r else "-",
        str(r["notify"]["violations"]) if "notify" in r else "-",
        str(r.get("settled_after_close_s", "-")), str(r.get("duration_s", "-")),
        "ok" if r.get("ok") else "VIOLATED",
    )


def print_row(r: dict[str, Any]) -> None:
    print("| " + " | ".join(row_cells(r)) + " |", flush=True)
    for v in r.get("violations", []):
        print(f"|   ↳ {v[:400]}", flush=True)


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in results]
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    def total(part: str, key: str) -> int:
        return sum(int(r.get(part, {}).get(key, 0)) for r in results)

    return {"runs": len(results), "violated": sum(not r.get("ok") for r in results),
            "readings": sum(int(r.get("readings", 0)) for r in results),
            "kills": dict(sum((Counter(r.get("kills", {})) for r in results), Counter())),
            "raw_lost": total("raw", "lost"), "raw_duplicated": total("raw", "duplicated"),
            "agg_bad_series_minutes": total("agg", "mismatched") + total("agg", "missing_minutes")
            + total("agg", "excess_minutes"),
            "agg_missing_readings": total("agg", "missing_readings"),
            "agg_excess_readings": total("agg", "excess_readings"),
            "healed_by_sink": total("agg", "healed_by_sink"),
            "healed_closed_later": total("agg", "healed_closed_later"),
            "falsely_late": total("late", "falsely_late"), "not_amended": total("late", "not_amended"),
            "alert_violations": total("alerts", "violations"), "notify_violations": total("notify", "violations")}


def git_head() -> str:
    """The commit the run starts from (with `+dirty` when the tree has uncommitted changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no")
                                                  else "")


def write_results(results: list[dict[str, Any]], profile: Profile, started: float, elapsed_s: float,
                  git: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"chaos-{dt.date.today().isoformat()}.json"
    doc: dict[str, Any] = {"invocations": []}
    with contextlib.suppress(OSError, ValueError):
        doc = json.loads(path.read_text())
    doc.setdefault("invocations", []).append({
        "started": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(), "host": platform.node(),
        "git": git, "profile": asdict(profile), "elapsed_s": round(elapsed_s, 1),
        "broker": os.environ.get("CHAOS_BROKER", "tansu"),
        "kafka_transactions": os.environ.get("KAFKA_TRANSACTIONS", "").lower() == "true",  # the worker's guarantee
        "summary": summary(results), "runs": results})
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return path


def seeds_from_env() -> list[int]:
    n = int(os.environ.get("CHAOS_RUNS", "20"))
    base = int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else random.SystemRandom().randrange(1, 10**6)
    return [base + i for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.chaos", description=__doc__.split("\n\n")[0] if __doc__ else "")
    sub = parser.add_subparsers(dest="cmd")
    one = sub.add_parser("run", help="one scenario (what `make chaos` launches per seed)")
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--profile", choices=sorted(PROFILES), default="full")
    one.add_argument("--boundary", type=float, help="epoch seconds of the run's minute boundary")
    one.add_argument("--dir", type=Path, required=True)
    one.add_argument("--out", type=Path, required=True)
    one.add_argument("--broker", choices=["tansu", "kafka"], default="tansu")
    args = parser.parse_args(argv)
    if args.cmd == "run":
        profile = PROFILES[args.profile]
        boundary = args.boundary or next_boundary(time.time() + profile.lead_s)
        result = run_one(args.seed, profile, boundary, args.dir, args.broker)
        args.out.write_text(json.dumps(result, ensure_ascii=False))
        return 0
    seeds = seeds_from_env()
    parallel = int(os.environ.get("CHAOS_PARALLEL", "3"))
    profile = PROFILES[os.environ.get("CHAOS_PROFILE", "full")]
    started, git = time.time(), git_head()
    log(None, f"{len(seeds)} runs on {os.environ.get('CHAOS_BROKER', 'tansu')}, seeds {seeds[0]}…{seeds[-1]}, "
              f"at most {parallel} at once, one per minute")
    print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER), flush=True)
    broker = os.environ.get("CHAOS_BROKER", "tansu")
    results = run_many(seeds, profile, parallel, keep=os.environ.get("CHAOS_KEEP") == "1", broker=broker)
    elapsed = time.time() - started
    path = write_results(results, profile, started, elapsed, git)
    print("\n" + table(results))
    s = summary(results)
    print(f"\n{s['runs']} runs in {elapsed / 60:.1f} min, {s['violated']} violated; {s['readings']:,} readings; "
          f"kills {s['kills']}; raw lost {s['raw_lost']}, duplicated {s['raw_duplicated']}; "
          f"{s['agg_bad_series_minutes']} bad series-minutes (short {s['agg_missing_readings']}, "
          f"over {s['agg_excess_readings']} readings); falsely late {s['falsely_late']}; "
          f"alert violations {s['alert_violations']}; notification violations {s['notify_violations']}")
    print(f"results: {path.relative_to(ROOT)}")
    for r in results:
        if not r.get("ok"):
            print(f"seed {r['seed']} violated: reproduce with {reproduce(r['seed'], broker)}"
                  + (f" (logs in {r['dir']})" if r.get("dir") else ""))
    return 1 if s["violated"] else 0


if __name__ == "__main__":
    sys.exit(main())
