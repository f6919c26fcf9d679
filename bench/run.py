"""`make bench`: figures for the streams worker and the sink, each beside a baseline measured in the
same run, so the ratio holds on a noisy machine. Writes bench/results/<date>-<host>.json and prints a
markdown table. Real parts only: the embedded Tansu broker, the real worker process, chDB."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controlroom.broker import free_port, start_tansu  # noqa: E402
from controlroom.catalog import default_catalog  # noqa: E402
from controlroom.kafka import all_topics, ensure_topics, make_producer  # noqa: E402
from controlroom.settings import Settings  # noqa: E402
from producers.simulator import Simulator  # noqa: E402

N_READINGS = int(os.environ.get("BENCH_READINGS", "200000"))
N_NAIVE = int(os.environ.get("BENCH_NAIVE_READINGS", "20000"))


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def readings(n: int) -> list[tuple[str, bytes, bytes]]:
    t0 = int(time.time() * 1000) - 3_600_000
    sim = Simulator(default_catalog(), seed=1, rate=max(1.0, n / (46.5 * 60)), start_ms=t0)
    return sim.between(t0, t0 + 60_000, 50)[:n]


async def publish(settings: Settings, msgs: list[tuple[str, bytes, bytes]], per_message: int) -> int:
    """Publish readings in event-time order, up to `per_message` per Kafka message (a JSON array when > 1),
    as a batching source would: per topic and key, within one second of event time."""
    producer = make_producer(settings)
    await producer.start()
    futures = []
    buffers: dict[tuple[str, bytes], list[bytes]] = {}

    async def flush(key: tuple[str, bytes]) -> None:
        chunk = buffers.pop(key)
        payload = chunk[0] if len(chunk) == 1 else b"[" + b",".join(chunk) + b"]"
        futures.append(await producer.send(key[0], payload, key=key[1]))

    slice_start = None
    for topic, key, value in msgs:  # the simulator yields them in time order
        ts = orjson.loads(value)["ts"]
        if slice_start is None or ts - slice_start >= 1000:
            for k in list(buffers):
                await flush(k)
            slice_start = ts
        buffers.setdefault((topic, key), []).append(value)
        if len(buffers[(topic, key)]) >= per_message:
            await flush((topic, key))
    for k in list(buffers):
        await flush(k)
    await asyncio.gather(*futures)
    await producer.stop()
    return len(futures)


def run_worker(settings: Settings, expect: int, data_dir: Path) -> dict[str, float]:
    """Start the real worker; time from its first absorbed reading until all are absorbed; peak RSS."""
    env = dict(os.environ, KAFKA_BOOTSTRAP=settings.kafka_bootstrap, KAFKA_IDEMPOTENCE="false",
               DATA_DIR=str(data_dir), LOG_FORMAT="json", STREAMS_REPORT_S="0.5",
               STREAMS_APP_ID=f"bench-{time.time_ns()}")
    proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "worker"], env=env, cwd=ROOT,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    first: tuple[float, int] | None = None
    result: dict[str, float] = {}
    assert proc.stderr is not None
    for line in proc.stderr:
        if '"streams progress"' not in line:
            continue
        d = orjson.loads(line)
        if d["readings"] and first is None:
            first = (time.monotonic(), d["readings"])
        if d["readings"] >= expect and first is not None:
            elapsed = time.monotonic() - first[0]
            counted = d["readings"] - first[1]
            result = {"readings": float(d["readings"]), "messages": float(d["messages"]),
                      "seconds": round(elapsed, 3), "readings_per_s": round(counted / elapsed) if elapsed else 0.0,
                      "messages_per_s": round(counted / elapsed * d["messages"] / d["readings"]) if elapsed else 0.0}
            break
    rss_kb = _rss_kb(proc.pid)
    proc.terminate()
    proc.wait(30)
    result["peak_rss_mb"] = round(rss_kb / 1024, 1)
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
    out = subprocess.run([sys.executable, "-m", "faust", "-A", "bench.naive_worker", "worker", "-l", "warn",
                          "--without-web"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    for line in (out.stdout + out.stderr).splitlines():
        if "NAIVE_DONE" in line:
            n, secs = line.split("NAIVE_DONE")[1].split()[:2]
            return {"readings": float(n), "seconds": float(secs), "readings_per_s": round(int(n) / float(secs))}
    raise RuntimeError("naive baseline did not finish:\n" + (out.stdout + out.stderr)[-2000:])


def bench_streams() -> dict[str, object]:
    msgs = readings(N_READINGS)
    out: dict[str, object] = {}
    for per_message in (1, 100):
        port = free_port()
        broker = start_tansu(port)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=False)
                asyncio.run(ensure_topics(settings, all_topics(default_catalog())))
                n = len(msgs) if per_message > 1 else min(len(msgs), 60_000)  # single: Faust-bound, keep it short
                n_msgs = asyncio.run(publish(settings, msgs[:n], per_message))
                log(f"streams: {n} readings in {n_msgs} messages ({per_message}/message)")
                out[f"worker_{per_message}_per_message"] = run_worker(settings, n, Path(tmp))
        finally:
            broker.terminate()
    port = free_port()
    broker = start_tansu(port)
    try:
        settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=False)
        asyncio.run(ensure_topics(settings, all_topics(default_catalog())))
        asyncio.run(publish(settings, msgs[:N_NAIVE], 1))
        log(f"streams baseline: naive per-event Faust Table on {N_NAIVE} readings")
        out["naive_faust_table"] = run_naive(settings, N_NAIVE)
    finally:
        broker.terminate()
    return out


def bench_sink() -> dict[str, object]:
    from sinks.migrate import migrate
    from sinks.rows import Record
    from sinks.warehouse import open_warehouse
    from sinks.writer import SinkWriter

    msgs = readings(N_READINGS)
    now = int(time.time() * 1000)
    records = [Record(t, 0, i, now, v) for i, (t, _k, v) in enumerate(msgs)]
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(clickhouse_url=f"chdb://{tmp}/wh")
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


def main() -> int:
    started = time.time()
    results: dict[str, object] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                  "host": platform.node(), "cpus": os.cpu_count(), "readings": N_READINGS}
    results["streams"] = bench_streams()
    results["sink"] = bench_sink()
    results["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["seconds"] = round(time.time() - started, 1)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{dt.date.today().isoformat()}-{platform.node()}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    s = results["streams"]
    assert isinstance(s, dict)
    w1, w100, naive = s["worker_1_per_message"], s["worker_100_per_message"], s["naive_faust_table"]
    sink = results["sink"]
    assert isinstance(sink, dict)
    base = naive["readings_per_s"]

    def row(figure: str, value: str, baseline: str = "", ratio: str = "") -> str:
        return f"| {figure} | {value} | {baseline} | {ratio} |"

    def worker(w: dict[str, float]) -> str:
        return f"{w['readings_per_s']:,.0f} readings/s ({w['messages_per_s']:,.0f} msg/s)"

    naive_text = f"naive Faust Table {base:,.0f} readings/s"
    lines = [
        row("figure", "value", "baseline (same run)", "ratio"), row("---", "---", "---", "---"),
        row("worker, 1 reading/message", worker(w1), naive_text, f"{w1['readings_per_s'] / base:.1f}×"),
        row("worker, 100 readings/message", worker(w100), naive_text, f"{w100['readings_per_s'] / base:.1f}×"),
        row("worker peak RSS", f"{w100['peak_rss_mb']} MB"),
        row("sink into chDB", f"{sink['batched_rows_per_s']:,} rows/s",
            f"row-by-row JSON {sink['row_by_row_json_rows_per_s']:,} rows/s", f"{sink['ratio']}×"),
    ]
    print("\n" + "\n".join(lines) + f"\n\nresults: {path.relative_to(ROOT)}  ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
