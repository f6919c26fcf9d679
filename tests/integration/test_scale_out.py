"""Scale-out on real parts, on Tansu and on Apache Kafka: two workers of one Faust app (one consumer group) share the
partitions; one is killed (SIGKILL) and the other takes its partitions over in a rebalance, its open windows
restored from the changelog. Every reading is stored once, and every closed window holds exactly its readings.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from controlroom.broker import stop_process
from controlroom.catalog import default_catalog
from controlroom.warehouse import Warehouse
from sinks.migrate import migrate
from sinks.writer import SinkWriter
from tests.integration.pipeline import start_worker, wait_for
from tests.integration.test_pipeline import MIN, T0, publish, wl

pytestmark = pytest.mark.integration

PROVINCES = sorted(default_catalog().provinces)  # 34 keys: every partition of feeds.water_level gets some


def progress(log_path: Path) -> dict[str, Any] | None:
    """The worker's latest progress line (JSON logs), None before its first."""
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if '"streams progress"' in line]
    return json.loads(lines[-1]) if lines else None


def owned(log_path: Path) -> int:
    latest = progress(log_path)
    return int(latest["partitions"]) if latest else 0


async def test_two_workers_share_the_partitions_and_one_takes_over_after_a_kill(
        any_broker: str, make_settings, warehouse: Warehouse, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(kafka_bootstrap=any_broker, idle_advance_after_s=3600.0, sink_flush_interval_s=0.3,
                             streams_report_s=1.0, log_format="json")
    catalog = default_catalog()
    source_partitions = len(catalog.topics) * settings.topic_partitions
    migrate(warehouse, catalog)
    db = warehouse.database
    # minute 0 before the kill, minute 1 after it, then a reading at 3:00 per province closes both windows
    before = [wl(f"a-{p}-{i}", T0 + 1_000 + 19_000 * i, 100 + i, province=p) for p in PROVINCES for i in range(3)]
    after = [wl(f"b-{p}-{i}", T0 + MIN + 5_000 + 20_000 * i, 200 + i, province=p) for p in PROVINCES for i in range(2)]
    closing = [wl(f"c-{p}", T0 + 3 * MIN, 300, province=p) for p in PROVINCES]
    logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
    stop = asyncio.Event()
    sink = asyncio.create_task(SinkWriter(settings, catalog, warehouse).run(stop))
    workers = [start_worker(settings.model_copy(update={"data_dir": tmp_path / f"w{n}"}), log)
               for n, log in enumerate(logs, 1)]
    shared: tuple[int, int] = (0, 0)
    try:
        await publish(any_broker, before)

        def sharing() -> tuple[int, int] | None:  # both own some partitions, together all of them
            split = (owned(logs[0]), owned(logs[1]))
            return split if min(split) > 0 and sum(split) == source_partitions else None

        shared = await wait_for(sharing, timeout_s=60, what="the two workers to share the partitions")
        await wait_for(lambda: sum(int((progress(log) or {}).get("readings", 0)) for log in logs) >= len(before),
                       timeout_s=60, what="the readings of minute 0 absorbed")
        await asyncio.sleep(6.0)  # two commit intervals: offsets and changelog durable
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        await wait_for(lambda: owned(logs[1]) == source_partitions, timeout_s=60,
                       what="the surviving worker to own every partition")
        await publish(any_broker, after + closing)
        await wait_for(lambda: warehouse.query(
            f"SELECT sum(count) AS n FROM {db}.agg_1m FINAL WHERE window_start < "
            f"fromUnixTimestamp64Milli({T0 + 2 * MIN})")[0]["n"] == len(before) + len(after),
            timeout_s=90, what="both minutes closed and stored")
        await asyncio.sleep(2.0)  # anything extra (a window counted twice) would land by now
    finally:
        for w in workers:
            stop_process(w)
        stop.set()
        await sink

    raw = warehouse.query(f"SELECT event_id FROM {db}.readings FINAL")
    assert sorted(r["event_id"] for r in raw) == sorted(
        json.loads(value)["event_id"] for _, _, value in before + after + closing)
    expected: dict[tuple[str, int], list[float]] = defaultdict(list)
    for _, _, value in before + after:
        doc = json.loads(value)
        expected[(doc["province"], doc["ts"] // MIN * MIN - T0)].append(doc["value"])
    stored = warehouse.query(
        f"SELECT province, toUnixTimestamp64Milli(window_start) AS ws, sum(count) AS n, sum(sum) AS total, "
        f"min(min) AS lo, max(max) AS hi FROM {db}.agg_1m FINAL WHERE window_start < "
        f"fromUnixTimestamp64Milli({T0 + 2 * MIN}) GROUP BY province, window_start")
    assert {(r["province"], int(r["ws"]) - T0): (int(r["n"]), r["total"], r["lo"], r["hi"]) for r in stored} == {
        key: (len(vs), sum(vs), min(vs), max(vs)) for key, vs in expected.items()}
    print(f"partitions owned while sharing: {shared}; then {source_partitions} by the survivor")
