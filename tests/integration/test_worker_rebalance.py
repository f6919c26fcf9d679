"""A worker SIGKILLed and restarted at once, while readings keep coming on every partition (chaos seed 4000).

The killed worker's group membership outlives it (session timeout, GROUP_SESSION_TIMEOUT_MS): the restarted
worker joins a group that still holds the dead member, may be given part of the partitions first and, once
the dead member expires, all of them — an in-process rebalance whose changelog recovery runs while the worker
already processes and closes windows. Done a few times in a row; afterwards every series-minute of
`agg_1m FINAL` must equal the recomputation from `readings FINAL` (the chaos oracle's comparison), and every
incarnation's assignments are logged ("partitions assigned") so the test shows what the group did.

Event time runs SPEED times faster than the wall clock (timestamps in the past, idle advance off): windows
close every few seconds, so kills land around window closes too.

The stored aggregates are the sink's (recomputed from the raw readings when the worker closes a window, or by the
sink's own check of closed windows when the worker does not: sinks/healer.py); the test prints how many windows
the sink had to recompute itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bench import chaos_oracle as oracle
from controlroom.catalog import default_catalog
from controlroom.schema import agency_headers, dims_key
from controlroom.warehouse import open_warehouse
from sinks.migrate import migrate
from sinks.writer import SinkWriter
from tests.integration.pipeline import start_worker, wait_for

pytestmark = pytest.mark.integration

MIN = 60_000
SPEED = 6  # event ms per wall ms
TICK_S = 0.5  # one reading per series per tick
PARTITIONS = 4
KILLS = 6
HEAL_AFTER_S = 10.0  # the sink's own check of closed windows (sinks/healer.py), within the settle time below


class Feeder:
    """One series per (topic, partition), a reading per series per tick, event time = SPEED × wall time."""

    def __init__(self, seed: int) -> None:
        catalog = default_catalog()
        rng = random.Random(seed)
        by_topic: dict[str, list[tuple[Any, str, dict[str, str]]]] = {}
        for feed, province, dims in catalog.iter_series():
            by_topic.setdefault(feed.topic, []).append((feed, province, dims))
        self.series = []  # (topic, partition, feed, province, dims)
        for topic, series in sorted(by_topic.items()):
            for p, (feed, province, dims) in enumerate(rng.sample(series, min(PARTITIONS, len(series)))):
                self.series.append((topic, p, feed, province, dims))
        self.rng = rng
        self.wall0 = time.time()
        self.t0 = (int(self.wall0 * 1000) - 3 * 3600_000) // MIN * MIN  # 3 h ago, on a minute
        self.published: dict[str, tuple[str, str, str, int, float]] = {}
        self.n = 0

    def event_now(self) -> int:
        return self.t0 + int((time.time() - self.wall0) * 1000 * SPEED)

    def value(self, feed: Any) -> float:
        v = feed.valid_min + (feed.valid_max - feed.valid_min) * self.rng.uniform(0.001, 0.05)
        return float(round(v)) if feed.kind == "counter" else round(v, 2)

    async def tick(self, producer: AIOKafkaProducer, ts: int) -> None:
        futures = []
        for topic, partition, feed, province, dims in self.series:
            self.n += 1
            eid = f"rb-{self.n}"
            value = self.value(feed)
            self.published[eid] = (feed.id, province, dims_key(dims), ts, value)
            doc = {"event_id": eid, "feed": feed.id, "province": province, "ts": ts, "value": value, "dims": dims,
                   "source": "test"}
            futures.append(await producer.send(topic, orjson.dumps(doc), key=province.encode(), partition=partition,
                                               headers=agency_headers(default_catalog(), topic, province.encode())))
        await asyncio.gather(*futures)

    async def run(self, producer: AIOKafkaProducer, stop: asyncio.Event) -> None:
        last = 0
        while not stop.is_set():
            ts = max(self.event_now(), last + 1)  # one series' event times never tie
            last = ts
            await self.tick(producer, ts)
            await asyncio.sleep(TICK_S)


async def changelog_history(bootstrap: str, topic: str, needles: list[str]) -> list[str]:
    """Every changelog record whose key holds one of `needles` (a missing series) or is a partition state, in
    order: partition, offset, key, value (or None for a tombstone)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    out = []
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            idle = 0 if batch else idle + 1
            for tp, records in batch.items():
                for r in records:
                    key = (r.key or b"").decode()
                    if any(n in key for n in needles):
                        value = r.value.decode() if r.value is not None else None
                        out.append(f"{tp.partition} {r.offset} {key} {value}")
        out.append(f"ends {ends}")
    finally:
        await consumer.stop()
    return out


def assignments(log_text: str) -> list[list[dict[str, Any]]]:
    """The "partitions assigned" lines of each incarnation (a worker log holds one incarnation)."""
    out = []
    for line in log_text.splitlines():
        if '"partitions assigned"' in line and line.startswith("{"):
            d = orjson.loads(line)
            out.append({k: d.get(k) for k in ("source", "source_partitions", "changelog_active", "changelog_standby",
                                              "generation", "recovered_before", "nth", "timestamp")})
    return [out]


@pytest.mark.parametrize("scenario", ["restart", "second-worker"])
async def test_worker_rebalances_lose_no_window(
        scenario: str, broker: str, make_settings, tmp_path: Path,
        output_dir: Path) -> None:  # type: ignore[no-untyped-def]
    """restart: the worker is SIGKILLed and restarted at once, KILLS times (the chaos case).
    second-worker: a second worker joins (both hold half the partitions) and is SIGKILLed; the first one takes
    its partitions back once the dead member expires — an in-process rebalance with a changelog recovery,
    KILLS times."""
    seed = int(time.time())
    rng = random.Random(seed)
    settings = make_settings(kafka_bootstrap=broker, idle_advance_after_s=3600.0, sink_flush_interval_s=0.3,
                             streams_report_s=2.0, log_format="json", sink_heal_after_s=HEAL_AFTER_S)
    catalog = default_catalog()
    warehouse = open_warehouse(settings)
    migrate(warehouse, catalog)
    db = warehouse.database
    stop_sink, stop_feed = asyncio.Event(), asyncio.Event()
    writer = SinkWriter(settings, catalog, warehouse)
    sink = asyncio.create_task(writer.run(stop_sink))
    feeder = Feeder(seed)
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=5)
    await producer.start()
    logs: list[Path] = []
    kills: list[str] = []

    def spawn() -> Any:
        path = tmp_path / f"worker{len(logs) + 1}.log"
        logs.append(path)
        return start_worker(settings, path)

    worker = spawn()
    feeding = asyncio.create_task(feeder.run(producer, stop_feed))
    try:
        await wait_for(lambda: '"windows closed"' in logs[0].read_text(), timeout_s=60,
                       what="the first worker closes windows")
        for _ in range(KILLS):
            if scenario == "restart":
                # Alternately short and long lives. A worker killed soon after it joined leaves a dead member
                # that the next one's group still holds: that one is first given part of the partitions (the
                # dead member holds the rest), then all of them once the dead member expires, in process.
                await asyncio.sleep(rng.uniform(1.5, 4.0) if len(logs) % 2 else rng.uniform(11.0, 16.0))
                worker.send_signal(signal.SIGKILL)
                await asyncio.to_thread(worker.wait, 10)
                kills.append(f"{time.time():.1f}")
                worker = spawn()  # at once: the dead member is still in the group
            else:
                second, second_log = spawn(), logs[-1]
                await wait_for(lambda path=second_log: '"partitions assigned"' in path.read_text(), timeout_s=60,
                               what="the second worker's assignment")
                await asyncio.sleep(rng.uniform(1.0, 6.0))
                second.send_signal(signal.SIGKILL)
                await asyncio.to_thread(second.wait, 10)
                kills.append(f"{time.time():.1f}")
                await asyncio.sleep(rng.uniform(6.0, 12.0))  # the first worker takes everything back meanwhile
        await asyncio.sleep(20.0)  # through the dead member's expiry and the rebalance that follows
        stop_feed.set()
        await feeding
        # every partition's watermark past the last reading's window: one reading per series 2 minutes on
        sentinel = (feeder.event_now() + 2 * MIN) // MIN * MIN + 30_000  # watermark: 20 s into its minute
        await feeder.tick(producer, sentinel)
        last_minute = sentinel - sentinel % MIN  # windows from here on stay open: not compared

        def rows() -> dict[str, Any]:
            return {
                "raw": warehouse.query(f"SELECT event_id, feed, province, dims_key, toUnixTimestamp64Milli(ts) AS ts, "
                                       f"value FROM {db}.readings FINAL"),
                "agg": warehouse.query(f"SELECT feed, province, dims_key, source_partition, "
                                       f"toUnixTimestamp64Milli(window_start) AS window_start, count, sum, min, max, "
                                       f"last, toUnixTimestamp64Milli(last_ts) AS last_ts FROM {db}.agg_1m FINAL"),
            }

        def compared() -> oracle.AggReport:
            got = rows()
            expected = {k: v for k, v in oracle.recompute(got["raw"]).items() if k[3] < last_minute}
            stored = {k: v for k, v in oracle.stored_aggregates(got["agg"]).items() if k[3] < last_minute}
            return oracle.compare_aggregates(expected, stored)

        def settled() -> bool:
            return len(warehouse.query(f"SELECT event_id FROM {db}.readings FINAL")) == len(feeder.published) and \
                compared().bad_minutes == 0

        with contextlib.suppress(AssertionError):  # judged below, with the details
            await wait_for(settled, timeout_s=90, what="every series-minute aggregated")
        report = compared()
    finally:
        stop_feed.set()
        await feeding
        await producer.stop()
        worker.terminate()
        await asyncio.to_thread(worker.wait, 20)
        stop_sink.set()
        await sink
        keep = output_dir / "worker_rebalance"
        keep.mkdir(exist_ok=True)
        for path in logs:
            (keep / path.name).write_text(path.read_text())

    per_incarnation = [assignments(p.read_text())[0] for p in logs]
    print(f"\nseed {seed}; kills at {kills}; {len(feeder.published)} readings; windows the sink recomputed itself "
          f"after they closed: {writer.stats.healed}, of which the worker closed {writer.stats.healed_then_closed} "
          f"later (late, not lost); assignments per incarnation:")
    for i, a in enumerate(per_incarnation, 1):
        print(f"  worker{i}: " + "; ".join(f"gen {x['generation']} source={x['source']}{x['source_partitions']} "
                                          f"changelog={x['changelog_active']} standby={x['changelog_standby']} "
                                          f"recovered_before={x['recovered_before']} nth={x['nth']}" for x in a))
    stored_ids = [r["event_id"] for r in warehouse.query(f"SELECT event_id FROM {db}.readings FINAL")]
    raw = oracle.check_raw(feeder.published, stored_ids)
    warehouse.close()
    assert not raw.violations(), raw.violations()
    if report.missing_minutes:
        needles = sorted({f"|{f}|{p}|{d}|" for f, p, d, _ws in report.missing_minutes})
        needles += sorted({f"p|{s[0]}|{s[1]}" for s in feeder.series if any(f"|{s[2].id}|{s[3]}|" in n
                                                                            for n in needles)})
        history = await changelog_history(broker, f"{settings.streams_app_id}-windows-changelog", needles)
        (output_dir / "worker_rebalance" / "changelog.txt").write_text("\n".join(history))
    assert not report.violations(), f"seed {seed}: " + "\n".join(report.violations())
    assert report.series_minutes > 100
