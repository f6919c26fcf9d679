"""The streams worker (Faust): validate → window → emit. Logic lives in pure modules; this wires it.

Per micro-batch (`take_events`): decode and validate each message (one reading, or a JSON array
of readings from a batched source), send rejects to feeds.dlq with the reason, absorb valid
readings into 1-minute windows (one changelog write per touched window), report late readings
on feeds.late. A timer closes windows whose end passed the watermark, publishes them on agg.1m,
waits until they are acknowledged, and only then forgets them.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import faust
import orjson
from faust.types import TP

from controlroom.catalog import Catalog
from controlroom.kafka import (
    FETCH_MAX_WAIT_MS,
    GROUP_HEARTBEAT_INTERVAL_MS,
    GROUP_REBALANCE_TIMEOUT_MS,
    GROUP_SESSION_TIMEOUT_MS,
)
from controlroom.logs import get_logger
from controlroom.schema import (
    AGG_TOPIC,
    DLQ_TOPIC,
    LATE_TOPIC,
    LIVE_TOPIC,
    Reading,
    dead_letter,
    decode_message,
    late_message,
    now_ms,
    window_message,
)
from controlroom.settings import Settings
from streams.changelog import ChangelogBuffer
from streams.live import LiveThrottle
from streams.windows import ClosedWindow, WindowEngine

log = get_logger("streams")

CHANGELOG_TABLE = "windows"
CHANGELOG_END = b"end|"  # closes every changelog write (see write_changelog); never a key of the window engine


def _short_fetch_wait() -> None:
    """Faust hard-codes a 1.5 s fetch wait for its consumer. A broker may hold a fetch that long when the
    partitions it asks for have nothing new at that instant (Tansu does), so a reading could sit 1.5 s
    before the worker saw it: event → alert was 0.8 s at the median, 2 s at p99. The wait is the
    consumer's own attribute, read when it starts; we shorten it right after Faust builds it."""
    from faust.transport.drivers import aiokafka as driver

    build = driver.AIOKafkaConsumerThread._create_worker_consumer
    if getattr(build, "controlroom_patched", False):
        return

    def build_with_short_wait(self: Any, transport: Any) -> Any:
        consumer = build(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    build_with_short_wait.controlroom_patched = True  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = build_with_short_wait  # type: ignore[method-assign]


class Counters:
    def __init__(self) -> None:
        self.messages = 0
        self.readings = 0
        self.rejected = 0
        self.late = 0
        self.duplicates = 0
        self.replayed = 0
        self.windows_closed = 0
        self.changelog_records = 0  # coalesced: about one per touched window per offset commit
        self.slowest_batch_ms = 0  # since the last progress line: where the latency tail comes from
        self.slowest_close_ms = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))

    def report(self) -> dict[str, int]:
        """The counters for a progress line; the two slowest-step gauges start again."""
        out = self.as_dict()
        self.slowest_batch_ms = self.slowest_close_ms = 0
        return out


def build_app(settings: Settings, catalog: Catalog) -> faust.App:
    _short_fetch_wait()
    app = faust.App(
        settings.streams_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",  # state is rebuilt from the changelog topic on start
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        broker_session_timeout=GROUP_SESSION_TIMEOUT_MS / 1000,
        broker_heartbeat_interval=GROUP_HEARTBEAT_INTERVAL_MS / 1000,
        broker_rebalance_timeout=GROUP_REBALANCE_TIMEOUT_MS / 1000,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=1 << 20,
        stream_buffer_maxsize=settings.stream_batch_max * 2,  # bounded: the backlog waits in Kafka
        # offsets (and the coalesced changelog) every commit interval (2.8 s), or after this many messages
        broker_commit_every=10_000,
        # large polls and fetches: the worker otherwise idles between small fetch round-trips
        broker_max_poll_records=settings.stream_batch_max,
        consumer_max_fetch_size=4 << 20,
    )
    source = app.topic(*catalog.topics, value_serializer="raw", key_serializer="raw")
    source_topics = frozenset(catalog.topics)
    table = app.Table(CHANGELOG_TABLE, default=None, partitions=settings.topic_partitions,
                      key_type=bytes, value_type=bytes)  # bytes ⇒ raw serializers
    max_future_ms, max_past_ms = int(settings.max_future_s * 1000), int(settings.max_past_s * 1000)
    counters = Counters()

    # The changelog is coalesced: the newest value of each key waits here and goes to the producer right
    # before Faust commits offsets (and when windows close). At 10k readings/s over 2,146 series a batch
    # touches ~2,000 windows: writing each touched window every batch cost one record per reading.
    # Order of one write (streams/windows.py, invariants I2 and I4): window updates, then partition states,
    # then tombstones of closed windows. The three are taken in one step (no await in between) and one write
    # runs at a time, so the changelog is always a prefix of that order.
    changelog = ChangelogBuffer()
    changelog_lock = asyncio.Lock()

    async def write_changelog() -> None:
        async with changelog_lock:
            batch = changelog.take()
            if not batch:
                return
            counters.changelog_records += len(batch)
            topic = table.changelog_topic.get_topic_name()
            for partition, key, value in batch:
                await app.producer.send(topic, key, value, partition, None, None)
            # Tansu answers ListOffsets with the last batch's first offset + 1, not its last offset + 1 (measured:
            # 4 records in one batch → end offset 1), and Faust's recovery reads a changelog up to that end: the
            # rest of the last batch — the partition states, written last — was lost on every restart. So the
            # write ends with a batch of one record per partition, a tombstone of a key never set.
            await app.producer.flush()
            for partition in sorted({p for p, _k, _v in batch}):
                await app.producer.send(topic, CHANGELOG_END, None, partition, None, None)

    def changelog_before_commit() -> None:
        """Wrap the consumer's commit so the coalesced changelog is sent first (Faust then flushes the
        producer and commits)."""
        consumer: Any = app.consumer  # faust.transport.consumer.Consumer (its type hides _commit_offsets)
        commit = consumer._commit_offsets
        if getattr(commit, "controlroom_patched", False):
            return

        async def commit_after_changelog(offsets: Any, start_new_transaction: bool = True) -> bool:
            await write_changelog()
            return bool(await commit(offsets, start_new_transaction=start_new_transaction))

        commit_after_changelog.controlroom_patched = True  # type: ignore[attr-defined]
        consumer._commit_offsets = commit_after_changelog

    engine = WindowEngine(table.data, changelog.persist, size_ms=settings.window_s * 1000,
                          lateness_ms=int(settings.allowed_lateness_s * 1000),
                          idle_ms=int(settings.idle_advance_after_s * 1000),
                          amend_horizon_ms=int(settings.amend_horizon_s * 1000))
    read_through: dict[tuple[str, int], int] = {}  # last offset handed to us per source partition (any verdict)

    def owned(topic: str, partition: int) -> bool:
        return TP(topic, partition) in app.assignor.assigned_actives()

    def caught_up(topic: str, partition: int) -> bool:
        """Nothing left to read on this partition: the broker's high watermark is just past what we were handed,
        or, when nothing was handed to us since the start, the offset we started from (the committed one: a
        worker restarted after the last reading has nothing to read, and its restored windows must close)."""
        tp = TP(topic, partition)
        if not owned(topic, partition):
            return False
        high = app.consumer.highwater(tp)
        if high is None:
            return False
        read = read_through.get((topic, partition))
        if read is not None:
            return read + 1 >= high
        consumer: Any = app.consumer  # faust's Consumer keeps the offsets it started from (untyped, private)
        return int(consumer._committed_offset.get(tp) or 0) >= high

    async def send(topic: str, key: bytes | None, value: dict[str, Any]) -> Any:
        return await app.producer.send(topic, key, orjson.dumps(value), None, None, None)

    live = LiveThrottle(int(settings.live_interval_s * 1000))

    def to_message(w: ClosedWindow, partition: int, wall: int) -> dict[str, Any]:
        return window_message(
            feed=w.feed, province=w.province, dims=w.dims, window_start_ms=w.window_start_ms,
            window_s=settings.window_s, count=w.agg.count, total=w.agg.total, vmin=w.agg.vmin,
            vmax=w.agg.vmax, last=w.agg.last, last_ts_ms=w.agg.last_ts, closed_ms=wall,
            source_partition=partition, source_topic=w.topic, max_offset=w.agg.max_offset)

    async def publish_live(wall: int) -> None:
        """Open windows as they stand, one message per source partition (same partition on agg.live, so
        each series' updates stay in order). Not awaited: a lost live update is made good by the next
        one or by the closed window on agg.1m."""
        by_partition: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for partition, w in live.take(wall):
            by_partition[partition].append(to_message(w, partition, wall))
        for partition, batch in by_partition.items():
            await app.producer.send(LIVE_TOPIC, None, orjson.dumps(batch), partition, None, None)

    @app.agent(source)
    async def process(stream: faust.StreamT) -> None:
        changelog_before_commit()
        # take_events is on faust's Stream but missing from its StreamT type
        async for events in stream.take_events(settings.stream_batch_max,  # type: ignore[attr-defined]
                                               within=settings.stream_batch_within_s):
            wall = now_ms()
            started = time.perf_counter()
            per_tp: dict[tuple[str, int], list[tuple[int, Reading]]] = defaultdict(list)
            for event in events:
                msg = event.message
                feed = catalog.feed_for_topic(msg.topic)
                ref_ms = round(msg.timestamp * 1000)  # the broker's timestamp: same verdict as the sink
                verdicts = decode_message(msg.value, catalog, ref_ms=ref_ms, max_future_ms=max_future_ms,
                                          max_past_ms=max_past_ms, topic_feed=feed.id if feed else None)
                counters.messages += 1
                read_through[(msg.topic, msg.partition)] = msg.offset
                for i, v in enumerate(verdicts):
                    if isinstance(v, Reading):
                        per_tp[(msg.topic, msg.partition)].append((msg.offset, v))
                        continue
                    counters.rejected += 1
                    suffix = f":{i}" if len(verdicts) > 1 else ""
                    dlq = dead_letter(v, msg.value, source_topic=msg.topic, partition=msg.partition,
                                      offset=msg.offset, received_ms=wall,
                                      dlq_id=f"{msg.topic}:{msg.partition}:{msg.offset}{suffix}")
                    await send(DLQ_TOPIC, msg.key, dlq)
            for (topic, partition), records in per_tp.items():
                counters.readings += len(records)
                result = engine.apply(topic, partition, records, wall)
                counters.late += len(result.late)
                counters.duplicates += result.duplicates
                counters.replayed += result.skipped_replayed
                for key, w in result.touched:
                    live.offer(key, partition, w)
                for late in result.late:
                    await send(LATE_TOPIC, late.reading.province.encode(),
                               late_message(late.reading, source_topic=topic, partition=partition,
                                            offset=late.offset, watermark_ms=late.watermark_ms,
                                            detected_ms=wall, amend=late.amend, window_s=settings.window_s))
            await publish_live(wall)  # the changelog waits for the commit (changelog_before_commit)
            counters.slowest_batch_ms = max(counters.slowest_batch_ms, round((time.perf_counter() - started) * 1000))

    @app.timer(0.5)
    async def close_windows() -> None:
        if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]  # untyped in faust
            return  # windows are only complete once the changelog has been replayed
        wall = now_ms()
        started = time.perf_counter()
        engine.advance_idle(wall, caught_up)  # watermarks moved by the clock: in the changelog by the next commit
        due = engine.due_windows(owned)
        for key, _partition, _w in due:
            live.forget(key)
        await publish_live(wall)  # updates held back by the throttle
        if not due:
            return
        futures = []
        for _key, partition, w in due:
            futures.append(await send(AGG_TOPIC, w.province.encode(), to_message(w, partition, wall)))
        for fut in futures:
            await fut  # durable on agg.1m before the window is forgotten
        for key, partition, _w in due:
            engine.forget(key, partition)
        await write_changelog()  # the tombstones now, so a restart does not close these windows again
        counters.windows_closed += len(due)
        counters.slowest_close_ms = max(counters.slowest_close_ms, round((time.perf_counter() - started) * 1000))

    @app.timer(settings.streams_report_s)
    async def report() -> None:
        owned_tps = [tp for tp in app.assignor.assigned_actives() if tp.topic in source_topics]
        behind = sum(1 for tp in owned_tps if not caught_up(tp.topic, tp.partition))
        log.info("streams progress", open_windows=engine.open_windows(), partitions=len(owned_tps),
                 partitions_behind=behind, **counters.report())

    app.conf.controlroom_counters = counters  # for tests and the benchmark
    return app
