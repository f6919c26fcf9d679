"""`make bench`: figures for the streams worker and the sink, each beside a baseline measured in the
same run, so the ratio holds on a noisy machine. Writes bench/results/<date>-<host>.json and prints a
markdown table. Real parts only: the embedded Tansu broker and Apache Kafka (BENCH_BROKERS, default both: every figure
that goes through a broker is measured on each), the real worker process, chDB."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.latency import READINGS_PER_S_AT_RATE_1, bench_latency  # noqa: E402
from controlroom.broker import (  # noqa: E402
    apache_kafka_problem,
    free_port,
    has_idempotence,
    start_broker,
    stop_process,
)
from controlroom.catalog import default_catalog  # noqa: E402
from controlroom.kafka import ensure_topics, system_topics  # noqa: E402
from controlroom.runner import tune_gc  # noqa: E402
from controlroom.settings import Settings  # noqa: E402
from producers.publisher import send_all  # noqa: E402
from producers.rdkafka import RdKafkaProducer  # noqa: E402
from producers.simulator import Simulator  # noqa: E402

N_READINGS = int(os.environ.get("BENCH_READINGS", "1000000"))  # runs of several seconds: steady figures
N_NAIVE = int(os.environ.get("BENCH_NAIVE_READINGS", "30000"))
SOAK_S = float(os.environ.get("BENCH_SOAK_S", "180"))  # the latency run; BENCH_SOAK_S=600 for the 10-minute RSS check
LATENCY_RATE = float(os.environ.get("BENCH_LATENCY_RATE", "10000"))
SCALE_OUT = tuple(int(n) for n in os.environ.get("BENCH_SCALE_OUT", "1,2,4").split(",") if n)  # "": none
N_SINGLE = int(os.environ.get("BENCH_SINGLE_READINGS", "200000"))  # one reading per message: worker and producers
PARTS = ("streams", "producers", "sink", "latency", "api", "backtest")  # BENCH_PARTS=streams,sink: only those
BROKERS = {"tansu": "Tansu", "kafka": "Apache Kafka"}  # BENCH_BROKERS=tansu: only the embedded broker
PROFILE_DIR = os.environ.get("BENCH_PROFILE_DIR")  # set: each worker runs under py-spy, a flame graph per run there


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


Message = tuple[str, bytes, bytes]  # topic, key, value (one reading, or a JSON array of readings)


def readings(n: int) -> list[Message]:
    t0 = int(time.time() * 1000) - 3_600_000
    sim = Simulator(default_catalog(), seed=1, rate=max(1.0, n / (READINGS_PER_S_AT_RATE_1 * 60)), start_ms=t0)
    return sim.between(t0, t0 + 60_000, 50)[:n]


def batch_messages(msgs: list[Message], per_message: int, slice_ms: int = 1000) -> list[Message]:
    """Group readings, in event-time order, up to `per_message` per Kafka message (a JSON array when > 1),
    as a batching source would: per topic and key, within `slice_ms` of event time (a provincial system
    exporting each minute: 60 000). Done before the workers run, so the publisher does not share their CPU."""
    out: list[Message] = []
    buffers: dict[tuple[str, bytes], list[bytes]] = {}

    def flush(key: tuple[str, bytes]) -> None:
        chunk = buffers.pop(key)
        out.append((key[0], key[1], chunk[0] if len(chunk) == 1 else b"[" + b",".join(chunk) + b"]"))

    slice_start = None
    for topic, key, value in msgs:  # the simulator yields them in time order
        ts = orjson.loads(value)["ts"]
        if slice_start is None or ts - slice_start >= slice_ms:
            for k in list(buffers):
                flush(k)
            slice_start = ts
        buffers.setdefault((topic, key), []).append(value)
        if len(buffers[(topic, key)]) >= per_message:
            flush((topic, key))
    for k in list(buffers):
        flush(k)
    return out


async def publish(settings: Settings, messages: list[Message]) -> None:
    producer = RdKafkaProducer(settings)  # the simulator's producer
    await producer.start()
    try:
        await send_all(producer, default_catalog(), messages)  # each sent as its series' supplier
    finally:
        await producer.stop()


def _env(settings: Settings, data_dir: Path, app_id: str) -> dict[str, str]:
    return dict(os.environ, KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
                KAFKA_IDEMPOTENCE=str(settings.kafka_idempotence).lower(),
                KAFKA_TRANSACTIONS=str(settings.kafka_transactions).lower(),
                DATA_DIR=str(data_dir), LOG_FORMAT="json", STREAMS_REPORT_S="0.2", STREAMS_APP_ID=app_id,
                TOPIC_PARTITIONS=str(settings.topic_partitions))


def _profile(pid: int, name: str) -> subprocess.Popen[bytes] | None:
    """py-spy sampling process `pid` when BENCH_PROFILE_DIR is set (py-spy: the dev extra); collapsed stacks
    in <dir>/<name>.txt once it gets SIGINT."""
    if not PROFILE_DIR:
        return None
    Path(PROFILE_DIR).mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking", "-r", "100",
                             "-f", "raw", "-o", str(Path(PROFILE_DIR) / f"{name}.txt"), "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_workers(settings: Settings, messages: list[Message], expect: int, data_dir: Path, *, workers: int = 1,
                with_alerter: bool = False,
                after: Callable[[Settings], dict[str, float]] | None = None) -> dict[str, Any]:
    """One worker: publish the messages, then start it (it drains a backlog: its own speed, not the publisher's,
    which shares the two cores). Several: start them, let their partitions settle, then publish (a later join
    would rebalance mid-run). Time from the first absorbed reading until all are absorbed; peak RSS of each
    worker. `after`
    runs once all are absorbed, before the workers stop; its figures join the result."""
    app_id = f"bench-{time.time_ns()}"
    if workers == 1:
        asyncio.run(publish(settings, messages))
    procs = []
    for i in range(workers):
        (data_dir / f"w{i}").mkdir(parents=True, exist_ok=True)
        procs.append(subprocess.Popen([sys.executable, "-m", "controlroom.cli", "worker"],
                                      env=_env(settings, data_dir / f"w{i}", app_id), cwd=ROOT,
                                      stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True))
    profilers = [_profile(p.pid, f"{app_id}-w{i}") for i, p in enumerate(procs)]
    alerter = None
    if with_alerter:
        alerter = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "alerter"],
                                   env=_env(settings, data_dir / "alerter", app_id), cwd=ROOT,
                                   stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    latest = [0] * workers
    batches = [0] * workers
    zero_at = [0.0] * workers  # when each worker last said it had absorbed nothing
    guarantees: set[str] = set()  # what the workers say they run: at_least_once, or exactly_once (transactions)
    lock = threading.Lock()

    def follow(i: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if '"streams progress"' in line:
                d = orjson.loads(line)
                with lock:
                    latest[i], batches[i] = d["readings"], d.get("batches", 0)
                    if not d["readings"]:
                        zero_at[i] = time.monotonic()
            elif '"partitions assigned"' in line:
                guarantees.add(str(orjson.loads(line).get("processing_guarantee")))

    for i, proc in enumerate(procs):
        threading.Thread(target=follow, args=(i, proc), daemon=True).start()
    if workers > 1:
        time.sleep(8 + 4 * workers)  # group joins on Tansu take ~session timeout / 2 each
        asyncio.run(publish(settings, messages))
    n_msgs = len(messages)
    # the clock starts at the last progress line that still said 0 (a backlog may be absorbed within one line)
    first: float | None = None
    deadline = time.monotonic() + 600
    alerter_cpu0 = _cpu_s(alerter.pid) if alerter else 0.0
    worker_cpu0 = 0.0
    while time.monotonic() < deadline:
        with lock:
            total, zero = sum(latest), max(zero_at)
        if not total:
            worker_cpu0 = sum(_cpu_s(p.pid) for p in procs)  # about its CPU time at that line
        elif first is None:
            first = zero or time.monotonic()
        if total >= expect:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - (first or time.monotonic())
    worker_cpu = sum(_cpu_s(p.pid) for p in procs) - worker_cpu0
    counted = expect if first is not None else 0
    with lock:
        absorbed = sum(latest)
    result = {"workers": float(workers), "readings": float(expect), "absorbed": float(absorbed),
              "messages": float(n_msgs),
              "readings_per_message": round(expect / n_msgs, 1), "seconds": round(elapsed, 3),
              "readings_per_s": round(counted / elapsed) if elapsed else 0.0,
              "messages_per_s": round(counted / elapsed * n_msgs / expect) if elapsed else 0.0,
              "peak_rss_mb": max(round(_rss_kb(p.pid) / 1024, 1) for p in procs),
              # CPU seconds per wall second, all workers: under 1 per worker means it waited (for fetches, or
              # for a core: the machine is shared)
              "worker_cpu_share": round(worker_cpu / elapsed, 2) if elapsed else 0.0,
              "readings_per_cpu_s": round(counted / worker_cpu) if worker_cpu else 0.0,
              "messages_per_batch": round(n_msgs / max(1, sum(batches)), 1),
              "processing_guarantee": ",".join(sorted(guarantees))}
    if alerter is not None:
        time.sleep(2.0)  # the open windows' last live updates
        result["alerter_cpu_share"] = round((_cpu_s(alerter.pid) - alerter_cpu0) / (elapsed + 2.0), 3)
        result["alerter_peak_rss_mb"] = round(_rss_kb(alerter.pid) / 1024, 1)
        alerter.terminate()
        alerter.wait(30)
    if after is not None:
        # while the workers still run (e.g. read what they published); the settings name their group
        result.update(after(settings.model_copy(update={"streams_app_id": app_id})))
    for prof in profilers:
        if prof is not None:
            prof.send_signal(signal.SIGINT)
            prof.wait(60)
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(30)
    return result


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_naive(settings: Settings, expect: int) -> dict[str, float]:
    env = dict(os.environ, KAFKA_BOOTSTRAP=settings.kafka_bootstrap, BENCH_N=str(expect),
               BENCH_APP_ID=f"naive-{time.time_ns()}", TOPIC_PARTITIONS=str(settings.topic_partitions))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([sys.executable, "-m", "faust", "-A", "bench.naive_worker", "worker", "-l", "warn",
                          "--without-web"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # its whole life (start-up and group join included, unlike the timed part): a bound, not the exact figure
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    for line in (out.stdout + out.stderr).splitlines():
        if "NAIVE_DONE" in line:
            n, secs = line.split("NAIVE_DONE")[1].split()[:2]
            return {"readings": float(n), "seconds": float(secs), "readings_per_s": round(int(n) / float(secs)),
                    "process_cpu_s": round(cpu, 2)}
    raise RuntimeError("naive baseline did not finish:\n" + (out.stdout + out.stderr)[-2000:])


def _with_broker(partitions: int, body: Any, broker_kind: str = "tansu", **overrides: Any) -> Any:
    """A fresh broker (Tansu, or "kafka": Apache Kafka in a temporary folder) with the system topics; `body`
    gets the settings (plus `overrides`, e.g. kafka_transactions=True) and a temporary folder."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        broker = start_broker(broker_kind, port, Path(tmp) / "kafka", Path(tmp) / "broker.log")
        try:
            settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=has_idempotence(broker_kind),
                                topic_partitions=partitions, **overrides)
            asyncio.run(ensure_topics(settings, system_topics(default_catalog())))
            (Path(tmp) / "run").mkdir()
            return body(settings, Path(tmp) / "run")
        finally:
            stop_process(broker)


def bench_streams(msgs: list[Message], broker_kind: str = "tansu", scale_out: tuple[int, ...] = SCALE_OUT,
                  ) -> dict[str, object]:
    out: dict[str, object] = {"broker": broker_kind}
    single = msgs[:min(len(msgs), N_SINGLE)]
    name = BROKERS[broker_kind]
    log(f"streams on {name}: {len(single):,} readings, one per message, default rules on")
    out["worker_1_per_message"] = _with_broker(
        4, lambda s, d: run_workers(s, batch_messages(single, 1), len(single), d, with_alerter=True), broker_kind)
    batched = batch_messages(msgs, 100, 60_000)
    log(f"streams on {name}: {len(msgs):,} readings batched per province and minute (≤100 per message, "
        f"{len(batched):,} messages), default rules on")
    out["worker_100_per_message"] = _with_broker(
        4, lambda s, d: run_workers(s, batched, len(msgs), d, with_alerter=True), broker_kind)
    log(f"streams baseline on {name}: naive per-event Faust Table on {N_NAIVE:,} readings")

    def naive(settings: Settings, _d: Path) -> dict[str, float]:
        asyncio.run(publish(settings, batch_messages(msgs[:N_NAIVE], 1)))
        return run_naive(settings, N_NAIVE)

    out["naive_faust_table"] = _with_broker(4, naive, broker_kind)
    scale: dict[str, object] = {}
    for n in scale_out:
        log(f"scale-out on {name}: {n} worker(s) on 8 partitions")
        scale[str(n)] = _with_broker(8, lambda s, d, n=n: run_workers(s, batched, len(msgs), d, workers=n),
                                     broker_kind)
    out["scale_out"] = scale
    return out


def brokers() -> list[str]:
    """The brokers asked for (BENCH_BROKERS) that can run here; Apache Kafka needs Java 17 and its jars (`make
    kafka`): without them it is left out, and said so."""
    asked = [b for b in os.environ.get("BENCH_BROKERS", ",".join(BROKERS)).split(",") if b]
    unknown = sorted(set(asked) - set(BROKERS))
    if unknown:
        raise SystemExit(f"BENCH_BROKERS: unknown {unknown}; the brokers are {', '.join(BROKERS)}")
    problem = apache_kafka_problem() if "kafka" in asked else None
    if problem is not None:
        log(f"*** Apache Kafka left out of this run: {problem} (`make kafka`)")
        asked.remove("kafka")
    return asked


def bench_sink(msgs: list[Message]) -> dict[str, object]:
    from controlroom.warehouse import open_warehouse
    from sinks.migrate import migrate
    from sinks.rows import Record
    from sinks.writer import SinkWriter

    tune_gc()  # as the sink's own process does (controlroom sink / api)
    now = int(time.time() * 1000)
    catalog = default_catalog()
    records = [Record(t, 0, i, now, v, catalog.registry.supplier(t.removeprefix("feeds."), k.decode()))
               for i, (t, k, v) in enumerate(msgs)]  # each with its header `agency`, as the simulator sends it
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(clickhouse_url=SecretStr(f"chdb://{tmp}/wh"))
        wh = open_warehouse(settings)
        try:
            catalog = default_catalog()
            migrate(wh, catalog)
            writer = SinkWriter(settings, catalog, wh)
            t = time.perf_counter()
            writer.write(records)
            batched = time.perf_counter() - t
            sample = msgs[:2000]  # baseline: one JSON row per INSERT (extrapolated from a sample)
            t = time.perf_counter()
            for _topic, _key, value in sample:
                doc = orjson.loads(value)
                row = {"event_id": doc["event_id"], "feed": doc["feed"], "province": doc["province"],
                       "province_original": doc["province"], "ts": doc["ts"] / 1000, "value": doc["value"],
                       "dims": doc["dims"], "dims_key": "", "source": doc["source"], "ingested_at": now / 1000,
                       "kafka_topic": "bench", "kafka_partition": 0, "kafka_offset": 0}
                wh.command(f"INSERT INTO {wh.database}.readings FORMAT JSONEachRow {orjson.dumps(row).decode()}")
            naive = time.perf_counter() - t
        finally:
            wh.close()
    return {"batched_rows_per_s": round(len(records) / batched), "rows": len(records),
            "row_by_row_json_rows_per_s": round(len(sample) / naive), "ratio": round((len(records) / batched) /
                                                                                    (len(sample) / naive), 1)}


def row(figure: str, value: str, baseline: str = "", ratio: str = "") -> str:
    return f"| {figure} | {value} | {baseline} | {ratio} |"


def _worker_text(w: dict[str, Any]) -> str:
    return (f"{w['readings_per_s']:,.0f} readings/s ({w['messages_per_s']:,.0f} msg/s; the worker had "
            f"{w.get('worker_cpu_share', 0):.2f} of a core: {w.get('readings_per_cpu_s', 0):,.0f} readings per CPU "
            f"second; peak RSS {w['peak_rss_mb']} MB)")


def on(result: dict[str, Any]) -> str:
    """A row's broker, as the figure names it."""
    return BROKERS[result.get("broker", "tansu")]


def streams_rows(s: dict[str, Any]) -> list[str]:
    w1, w100, naive = s["worker_1_per_message"], s["worker_100_per_message"], s["naive_faust_table"]
    base = naive["readings_per_s"]
    naive_text = f"naive Faust Table {base:,.0f} readings/s"
    return [
        row(f"worker, 1 reading/message, default rules on, {on(s)} (target ≥ 50k/s, ≥ 15×)", _worker_text(w1),
            naive_text, f"{w1['readings_per_s'] / base:.1f}×"),
        row(f"worker, ≤100 readings/message, default rules on, {on(s)} (target ≥ 100k/s, ≥ 25×)",
            _worker_text(w100), naive_text, f"{w100['readings_per_s'] / base:.1f}×"),
    ] + [row(f"scale-out, {n} worker(s), 8 partitions, {on(s)}", f"{w['readings_per_s']:,.0f} readings/s")
         for n, w in s.get("scale_out", {}).items()]


def producers_rows(p: dict[str, Any]) -> list[str]:
    return [row(f"producers, one reading per message, {on(p)} (simulator, replay: librdkafka)",
                f"confluent-kafka {p['confluent_kafka_msgs_per_s']:,} msg/s",
                f"aiokafka {p['aiokafka_msgs_per_s']:,} msg/s", f"{p['ratio']}×")]


def sink_rows(sink: dict[str, Any]) -> list[str]:
    return [row("sink into chDB, decode + validate + insert (target ≥ 300k rows/s)",
                f"{sink['batched_rows_per_s']:,} rows/s",
                f"row-by-row JSON {sink['row_by_row_json_rows_per_s']:,} rows/s", f"{sink['ratio']}×")]


def api_rows(api: dict[str, Any]) -> list[str]:
    ov, old, new = api["overview"], api["overview_query_old"], api["overview_query_new"]
    rows = f"{api['load']['rows']:,} readings"
    return [
        row(f"/overview p50 / p99 over HTTP ({rows}; shared snapshot, refreshed each second)",
            f"{ov['p50_ms']} / {ov['p99_ms']} ms ({ov['requests_per_s']} req/s)",
            f"its refresh query p50 / p99 {new['p50_ms']} / {new['p99_ms']} ms; "
            f"pre-0005 query {old['p50_ms']} / {old['p99_ms']} ms", f"{api['overview_query_ratio']}× (query)"),
        row(f"/series p50 / p99 over HTTP ({rows})", f"{api['series']['p50_ms']} / {api['series']['p99_ms']} ms",
            f"API peak RSS {api['api_peak_rss_mb']} MB"),
    ]


def latency_rows(lat: dict[str, Any]) -> list[str]:
    def pcts(p: dict[str, float]) -> str:
        return f"{p.get('p50', 0):,.0f} / {p.get('p95', 0):,.0f} / {p.get('p99', 0):,.0f} ms (n={p.get('n', 0):,})"

    at = f"{on(lat)}, at {lat['published_readings_per_s']:,} readings/s for {lat['seconds']:.0f} s"
    lines = [
        row(f"event → alert p50 / p95 / p99 ({at})", pcts(lat["event_to_alert_ms"]),
            f"worker's leg (event → open window) {pcts(lat['event_to_live_window_ms'])}"),
        row(f"event → row in ClickHouse p50 / p95 / p99 ({at})", pcts(lat["event_to_stored_ms"]),
            "includes the source's 1 s batching"),
    ]
    for name, r in sorted(lat["rss"].items()):
        lines.append(row(f"RSS {name} over the latency run, {on(lat)} (minute 1 → end)",
                         f"{r['minute_1_mb']} → {r['last_mb']} MB, peak {r['peak_mb']} MB",
                         f"RssAnon (own) {r['rssanon_minute_1_mb']} → {r['rssanon_last_mb']} MB; "
                         f"RssFile (mapped files) {r['rssfile_minute_1_mb']} → {r['rssfile_last_mb']} MB"))
    return lines


def run_parts(parts: set[str], results: dict[str, Any], kinds: list[str]) -> list[str]:
    """Run the parts asked for (BENCH_PARTS), in the order of a full run, those through a broker on each of
    `kinds` (results[part] on the first, results["on_<kind>"][part] on the others); their table rows."""
    lines: list[str] = []

    def where(kind: str) -> dict[str, Any]:
        return results if kind == kinds[0] else results.setdefault(f"on_{kind}", {})

    if parts & {"streams", "sink", "producers"}:
        log(f"simulating about {N_READINGS:,} readings: one minute of every catalog series")
        msgs = readings(N_READINGS)
        results["readings"] = len(msgs)
        if "streams" in parts:
            for kind in kinds:  # the scale-out on the first broker only: a run of several minutes each
                where(kind)["streams"] = bench_streams(msgs, kind, SCALE_OUT if kind == kinds[0] else ())
                lines += streams_rows(where(kind)["streams"])
        if "producers" in parts:
            from bench.producers_bench import bench_producers

            singles = batch_messages(msgs[:N_SINGLE], 1)
            for kind in kinds:
                log(f"producers on {BROKERS[kind]}: aiokafka and confluent-kafka, one reading per message")
                where(kind)["producers"] = {"broker": kind, **_with_broker(
                    4, lambda st, _d: bench_producers(st, singles), kind)}
                lines += producers_rows(where(kind)["producers"])
        if "sink" in parts:
            results["sink"] = bench_sink(msgs)
            lines += sink_rows(results["sink"])
        del msgs
    if "latency" in parts:
        for kind in kinds:
            where(kind)["latency"] = bench_latency(SOAK_S, LATENCY_RATE, broker_kind=kind)
    if "api" in parts:
        from bench.api_bench import bench_api

        results["api"] = bench_api(int(os.environ.get("BENCH_API_ROWS", "10000000")))
        lines += api_rows(results["api"])
    if "backtest" in parts:
        from bench.backtest_bench import bench_backtest, table_rows

        log("backtest: 30 days of agg_1m for one feed x 34 provinces")
        results["backtest"] = bench_backtest()
        lines += [row(figure, value, comment) for figure, value, comment in table_rows(results["backtest"])]
    if "latency" in parts:
        for kind in kinds:
            lines += latency_rows(where(kind)["latency"])
    return lines


def main() -> int:
    started = time.time()
    parts = set(os.environ.get("BENCH_PARTS", ",".join(PARTS)).split(","))
    if parts - set(PARTS):
        raise SystemExit(f"BENCH_PARTS: unknown {sorted(parts - set(PARTS))}; the parts are {', '.join(PARTS)}")
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                               "host": platform.node(), "cpus": os.cpu_count(), "parts": sorted(parts),
                               # the machine is shared: the figures are only comparable beside their baselines
                               "load_average_at_start": os.getloadavg()}
    kinds = brokers() if parts & {"streams", "producers", "latency"} else ["tansu"]
    results["brokers"] = kinds
    lines = run_parts(parts, results, kinds)
    results["load_average_at_end"] = os.getloadavg()
    results["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["seconds"] = round(time.time() - started, 1)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if parts == set(PARTS) else "-" + "-".join(sorted(parts))
    path = out_dir / f"{dt.date.today().isoformat()}-{platform.node()}{suffix}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    header = [row("figure", "value", "baseline (same run)", "ratio"), row("---", "---", "---", "---")]
    print("\n" + "\n".join(header + lines) + f"\n\nresults: {path.relative_to(ROOT)}  ({results['seconds']} s; "
          f"load average {results['load_average_at_start'][0]:.1f} at the start, "
          f"{results['load_average_at_end'][0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
