"""The worker with and without Kafka transactions (KAFKA_TRANSACTIONS: Faust's processing_guarantee="exactly_once"),
on Apache Kafka, the same readings, the real worker process (bench/run.py's run_workers).

    python -m bench.transactions        # BENCH_TXN_READINGS (default 300000), BENCH_TXN_ROUNDS (default 2)

Per run: readings absorbed per second; then, with the workers still running, what they published on agg.1m
(read with isolation_level=read_committed, as a transactional reader would) — the closed windows' counts must sum to
the readings published — and whether the group's committed offsets reached the end of every source partition.
Writes bench/results/transactions-<date>.json and prints a table (README "Reliability" quotes it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.run import ROOT, Message, _with_broker, batch_messages, log, readings, run_workers
from controlroom.broker import apache_kafka_problem
from controlroom.catalog import default_catalog
from controlroom.kafka import make_consumer
from controlroom.schema import AGG_TOPIC, LATE_TOPIC
from controlroom.settings import Settings

N = int(os.environ.get("BENCH_TXN_READINGS", "300000"))
ROUNDS = int(os.environ.get("BENCH_TXN_ROUNDS", "2"))
PARTITIONS = 4


async def closed_windows(settings: Settings, expect: int, timeout_s: float) -> dict[str, float]:
    """What the worker published, as a read_committed reader sees it: the closed windows' counts on agg.1m (one per
    identity) and the late readings on feeds.late (one message each: a reading whose window had closed is reported
    there, not counted again in a window), until they add up to `expect` or the time is up."""
    consumer = make_consumer(settings, AGG_TOPIC, LATE_TOPIC, group_id=None, isolation_level="read_committed")
    await consumer.start()
    windows: dict[tuple[Any, ...], int] = {}
    late = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout_s:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for tp, records in batch.items():
                for r in records:
                    if tp.topic == LATE_TOPIC:
                        late += 1
                        continue
                    w = orjson.loads(r.value)
                    windows[(w["feed"], w["province"], w["dims_key"], w["window_start"], w["source_partition"])] = \
                        w["count"]
            if sum(windows.values()) + late >= expect:
                break
    finally:
        await consumer.stop()
    return {"agg_windows": float(len(windows)), "agg_count_sum": float(sum(windows.values())), "late": float(late),
            "agg_wait_s": round(time.monotonic() - started, 1)}


async def committed_lag(settings: Settings, timeout_s: float) -> float:
    """Source records not yet covered by the worker group's committed offsets (0: every offset committed)."""
    topics = default_catalog().topics
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    consumer = make_consumer(settings, group_id=None, isolation_level="read_committed")
    await admin.start()
    await consumer.start()
    lag = -1.0
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed = await admin.list_consumer_group_offsets(settings.streams_app_id)
            lag = float(sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items()))
            if lag == 0:
                break
            await asyncio.sleep(1.0)
    finally:
        await consumer.stop()
        await admin.close()
    return lag


def one_run(msgs: list[Message], expect: int, transactions: bool) -> dict[str, Any]:
    def after(settings: Settings) -> dict[str, float]:
        out = asyncio.run(closed_windows(settings, expect, 150.0))  # the last windows close ~75 s after the end
        out["committed_lag"] = asyncio.run(committed_lag(settings, 30.0))
        return out

    def body(settings: Settings, data_dir: Path) -> dict[str, Any]:
        return run_workers(settings, msgs, expect, data_dir, after=after)

    return dict(_with_broker(PARTITIONS, body, "kafka", kafka_transactions=transactions),
                transactions=float(transactions))


def main() -> int:
    problem = apache_kafka_problem()
    if problem:
        print(f"Apache Kafka is needed: {problem}", file=sys.stderr)
        return 1
    raw = readings(N)
    shapes = {"100_per_message": batch_messages(raw, 100, 60_000), "1_per_message": batch_messages(raw[:30_000], 1)}
    expect = {"100_per_message": len(raw), "1_per_message": min(len(raw), 30_000)}
    results: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                               "broker": "Apache Kafka (single KRaft node)", "runs": []}
    for rnd in range(ROUNDS):
        for shape, msgs in shapes.items():
            order = (False, True) if rnd % 2 == 0 else (True, False)  # alternate: no mode always runs first
            for txn in order:
                log(f"round {rnd + 1}: {shape}, {expect[shape]:,} readings, KAFKA_TRANSACTIONS={str(txn).lower()}")
                r = one_run(msgs, expect[shape], txn)
                r["round"], r["shape"] = rnd + 1, shape  # type: ignore[assignment]
                log(json.dumps(r))
                results["runs"].append(r)
    out = ROOT / "bench" / "results" / f"transactions-{dt.date.today().isoformat()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print("| shape | worker runs | readings/s | absorbed / published | agg.1m windows' counts + late (read_committed) "
          "| source offsets not committed |")
    print("|---|---|---|---|---|---|")
    for r in results["runs"]:
        print(f"| {r['shape']} | {r['processing_guarantee']} | {r['readings_per_s']:,.0f} | {r['absorbed']:,.0f} / "
              f"{r['readings']:,.0f} | {r.get('agg_count_sum', 0):,.0f} + {r.get('late', 0):,.0f} | "
              f"{r.get('committed_lag', -1):,.0f} |")
    print(f"\nresults: {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
