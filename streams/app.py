"""The streams worker (Faust): validate → window → emit. Logic lives in pure modules; this wires it.

Per micro-batch (whole consumer fetches, handed over by faust_patches.BulkSource: Faust's per-event path
cost ~100 µs a message): decode and validate each message (one reading, or a JSON array
of readings from a batched source), send rejects to feeds.dlq with the reason, absorb valid
readings into 1-minute windows (one changelog write per touched window), report late readings
on feeds.late. A timer closes windows whose end passed the watermark, publishes them on agg.1m,
waits until they are acknowledged, and only then forgets them.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import faust
import orjson
from faust.types import TP

from controlroom import metrics
from controlroom.catalog import Catalog
from controlroom.kafka import (
    GROUP_HEARTBEAT_INTERVAL_MS,
    GROUP_REBALANCE_TIMEOUT_MS,
    GROUP_SESSION_TIMEOUT_MS,
)
from controlroom.logs import get_logger
from controlroom.schema import (
    AGG_TOPIC,
    DLQ_TOPIC,
    LATE_AMENDED,
    LATE_TOO_LATE,
    LATE_TOPIC,
    LIVE_TOPIC,
    DeadLetter,
    LateReading,
    Reading,
    Rejection,
    WindowMessage,
    agency_of,
    dead_letter,
    decode_message,
    late_message,
    now_ms,
    window_message,
)
from controlroom.settings import Settings
from streams import faust_patches
from streams.changelog import ChangelogBuffer
from streams.live import LiveThrottle
from streams.windows import ClosedWindow, WindowEngine

log = get_logger("streams")

CHANGELOG_TABLE = "windows"
CHANGELOG_END = b"end|"  # closes every changelog write (see write_changelog); never a key of the window engine


class Counters:
    def __init__(self) -> None:
        self.messages = 0
        self.batches = 0  # micro-batches (messages / batches: what one bulk hand-over holds)
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


def faust_app(settings: Settings) -> faust.App:
    """The Faust application: raw bytes in and out, state rebuilt from the changelog, bounded batches."""
    faust_patches.shorten_fetch_wait()
    faust_patches.bulk_fetch()
    return faust.App(
        settings.streams_app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",  # state is rebuilt from the changelog topic on start
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=settings.topic_partitions,
        # Faust creates its own topics (the windows changelog, compacted by Faust's default): same replication
        topic_replication_factor=settings.topic_replication,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=False,
        broker_session_timeout=GROUP_SESSION_TIMEOUT_MS / 1000,
        broker_heartbeat_interval=GROUP_HEARTBEAT_INTERVAL_MS / 1000,
        broker_rebalance_timeout=GROUP_REBALANCE_TIMEOUT_MS / 1000,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="exactly_once" if settings.kafka_transactions else "at_least_once",
        producer_acks=-1,
        producer_linger_ms=5,
        producer_max_batch_size=1 << 20,
        stream_buffer_maxsize=settings.stream_batch_max * 2,  # bounded: the backlog waits in Kafka
        # offsets (and the coalesced changelog) every commit interval (2.8 s), or after this many messages
        broker_commit_every=10_000,
        # large polls and fetches: the worker otherwise idles between small fetch round-trips
        broker_max_poll_records=settings.stream_batch_max,  # the first fetch; then BulkSource sizes them
        consumer_max_fetch_size=4 << 20,
    )


class Worker:
    """What the agent and the timers do, around the pure window engine. One per process."""

    def __init__(self, settings: Settings, catalog: Catalog, app: faust.App, table: Any) -> None:
        self.settings, self.catalog, self.app, self.table = settings, catalog, app, table
        self.source_topics = frozenset(catalog.topics)
        self.max_future_ms, self.max_past_ms = int(settings.max_future_s * 1000), int(settings.max_past_s * 1000)
        self.counters = Counters()
        # The changelog is coalesced: the newest value of each key waits here and goes to the producer right
        # before Faust commits offsets (and when windows close). At 10k readings/s over 2,146 series a batch
        # touches ~2,000 windows: writing each touched window every batch cost one record per reading.
        # Order of one write (streams/windows.py, invariants I2 and I4): window updates, then partition states,
        # then tombstones of closed windows. The three are taken in one step (no await in between) and one
        # write runs at a time, so the changelog is always a prefix of that order.
        self.changelog = ChangelogBuffer()
        self.changelog_lock = asyncio.Lock()
        self.engine = WindowEngine(table.data, self.changelog.persist, size_ms=settings.window_s * 1000,
                                   lateness_ms=int(settings.allowed_lateness_s * 1000),
                                   idle_ms=int(settings.idle_advance_after_s * 1000),
                                   amend_horizon_ms=int(settings.amend_horizon_s * 1000))
        self.live = LiveThrottle(int(settings.live_interval_s * 1000))
        self.read_through: dict[tuple[str, int], int] = {}  # last offset handed to us per source partition
        self.assignments = 0  # rebalances seen by this process (a second one is an in-process rebalance)
        feeds = [f.id for f in catalog.feeds.values()]
        for counter in (metrics.READINGS_IN, metrics.READINGS_OUT, metrics.DEAD_LETTERS):
            metrics.prepare(counter, feeds)

    # --- the changelog -------------------------------------------------------------------------------------

    async def write_changelog(self) -> None:
        async with self.changelog_lock:
            batch = self.changelog.take()
            if not batch:
                return
            self.counters.changelog_records += len(batch)
            producer = self.app.producer
            topic = self.table.changelog_topic.get_topic_name()
            for partition, key, value in batch:
                await producer.send(topic, key, value, partition, None, None)
            # Tansu answers ListOffsets with the last batch's first offset + 1, not its last offset + 1 (measured:
            # 4 records in one batch → end offset 1), and Faust's recovery reads a changelog up to that end: the
            # rest of the last batch — the partition states, written last — was lost on every restart. So the
            # write ends with a batch of one record per partition, a tombstone of a key never set.
            await producer.flush()
            for partition in sorted({p for p, _k, _v in batch}):
                await producer.send(topic, CHANGELOG_END, None, partition, None, None)

    # --- partitions ----------------------------------------------------------------------------------------

    def owned(self, topic: str, partition: int) -> bool:
        # the assignor builds this set anew on each call: callers that check many partitions use owned_now()
        return TP(topic, partition) in self.app.assignor.assigned_actives()

    def owned_now(self) -> Callable[[str, int], bool]:
        """`owned` against the assignment as it stands now, for one pass over many windows or partitions."""
        actives = self.app.assignor.assigned_actives()
        return lambda topic, partition: TP(topic, partition) in actives

    def next_offset(self, tp: TP) -> int:
        """The next offset this worker reads on a source partition: just past what it was handed, or, when nothing
        was handed to it since the start, the offset it started from (the committed one)."""
        read = self.read_through.get((tp.topic, tp.partition))
        if read is not None:
            return read + 1
        consumer: Any = self.app.consumer  # faust's Consumer keeps the offsets it started from (untyped, private)
        return int(consumer._committed_offset.get(tp) or 0)  # noqa: SLF001 (Faust has no public getter)

    def caught_up(self, topic: str, partition: int, owned: Callable[[str, int], bool] | None = None) -> bool:
        """Nothing left to read on this partition: the broker's high watermark is reached by the next offset (a
        worker restarted after the last reading has nothing to read, and its restored windows must close)."""
        tp = TP(topic, partition)
        if not (owned or self.owned)(topic, partition):
            return False
        high = self.app.consumer.highwater(tp)
        return high is not None and self.next_offset(tp) >= high

    def sample_lag(self) -> None:
        """controlroom_consumer_lag of the source partitions this worker owns, from its own view: the high watermark
        of its consumer's last fetch minus the next offset it reads."""
        lags: dict[tuple[str, int], int] = {}
        for tp in self.app.assignor.assigned_actives():
            if tp.topic in self.source_topics:
                high = self.app.consumer.highwater(tp)
                if high is not None:
                    lags[(tp.topic, tp.partition)] = max(0, high - self.next_offset(tp))
        metrics.CONSUMER_LAG.set(self.settings.streams_app_id, lags)

    # --- output --------------------------------------------------------------------------------------------

    async def send(self, topic: str, key: bytes | None, value: WindowMessage | DeadLetter | LateReading) -> Any:
        return await self.app.producer.send(topic, key, orjson.dumps(value), None, None, None)

    def to_message(self, w: ClosedWindow, partition: int, wall: int) -> WindowMessage:
        return window_message(
            feed=w.feed, province=w.province, dims=w.dims, window_start_ms=w.window_start_ms,
            window_s=self.settings.window_s, count=w.agg.count, total=w.agg.total, vmin=w.agg.vmin,
            vmax=w.agg.vmax, last=w.agg.last, last_ts_ms=w.agg.last_ts, closed_ms=wall,
            source_partition=partition, source_topic=w.topic, max_offset=w.agg.max_offset)

    async def publish_live(self, wall: int) -> None:
        """Open windows as they stand, one message per source partition (same partition on agg.live, so
        each series' updates stay in order). Not awaited: a lost live update is made good by the next
        one or by the closed window on agg.1m."""
        by_partition: dict[int, list[WindowMessage]] = defaultdict(list)
        for partition, w in self.live.take(wall):
            by_partition[partition].append(self.to_message(w, partition, wall))
        for partition, batch in by_partition.items():
            await self.app.producer.send(LIVE_TOPIC, None, orjson.dumps(batch), partition, None, None)

    # --- one micro-batch -----------------------------------------------------------------------------------

    async def process(self, messages: list[Any]) -> None:
        """One micro-batch of Faust ConsumerMessages (faust_patches.BulkSource: whole fetches)."""
        wall = now_ms()
        started = time.perf_counter()
        per_tp: dict[tuple[str, int], list[tuple[int, Reading]]] = defaultdict(list)
        rejected: dict[str, int] = defaultdict(int)  # per feed topic, for /metrics
        self.counters.messages += len(messages)
        self.counters.batches += 1
        for msg in messages:
            self.read_through[(msg.topic, msg.partition)] = msg.offset
            valid, bad = await self._validated(msg, wall)
            rejected[msg.topic] += bad
            for offset, reading in valid:
                per_tp[(msg.topic, msg.partition)].append((offset, reading))
        for (topic, partition), records in per_tp.items():
            await self._absorb(topic, partition, records, wall)
        await self.publish_live(wall)  # the changelog waits for the commit (faust_patches.before_commit)
        self._count(per_tp, rejected)
        elapsed = time.perf_counter() - started
        metrics.BATCH_SECONDS.labels("worker").observe(elapsed)
        self.counters.slowest_batch_ms = max(self.counters.slowest_batch_ms, round(elapsed * 1000))

    def _count(self, per_tp: dict[tuple[str, int], list[tuple[int, Reading]]], rejected: dict[str, int]) -> None:
        """The batch's readings in and dead letters per feed, for /metrics: one increment per feed."""
        read: dict[str, int] = defaultdict(int)
        for (topic, _partition), records in per_tp.items():
            read[self.feed_of(topic)] += len(records)
        dead = {self.feed_of(topic): n for topic, n in rejected.items()}
        for feed, n in dead.items():
            read[feed] += n
        metrics.add(metrics.READINGS_IN, read)
        metrics.add(metrics.DEAD_LETTERS, dead)

    def feed_of(self, topic: str) -> str:
        feed = self.catalog.feed_for_topic(topic)
        return feed.id if feed else topic

    async def _validated(self, msg: Any, wall: int) -> tuple[list[tuple[int, Reading]], int]:
        """The message's valid readings, and how many were rejected (each goes to feeds.dlq with its reason)."""
        agency = agency_of(msg.headers)  # a dead letter records its sender
        verdicts = message_verdicts(msg, self.catalog, max_future_ms=self.max_future_ms, max_past_ms=self.max_past_ms)
        valid: list[tuple[int, Reading]] = []
        for i, v in enumerate(verdicts):
            if isinstance(v, Reading):
                valid.append((msg.offset, v))
                continue
            self.counters.rejected += 1
            suffix = f":{i}" if len(verdicts) > 1 else ""
            dlq = dead_letter(v, msg.value, source_topic=msg.topic, partition=msg.partition, offset=msg.offset,
                              received_ms=wall, dlq_id=f"{msg.topic}:{msg.partition}:{msg.offset}{suffix}",
                              agency=agency or "")
            await self.send(DLQ_TOPIC, msg.key, dlq)
        return valid, len(verdicts) - len(valid)

    async def _absorb(self, topic: str, partition: int, records: list[tuple[int, Reading]], wall: int) -> None:
        c = self.counters
        c.readings += len(records)
        result = self.engine.apply(topic, partition, records, wall)
        c.late += len(result.late)
        c.duplicates += result.duplicates
        c.replayed += result.skipped_replayed
        feed = self.feed_of(topic)
        metrics.READINGS_OUT.labels(feed).inc(result.applied)
        if result.duplicates:
            metrics.DUPLICATES.labels(feed).inc(result.duplicates)
        if result.late:
            amended = sum(1 for late in result.late if late.amend)
            metrics.LATE.labels(feed, LATE_AMENDED).inc(amended)
            metrics.LATE.labels(feed, LATE_TOO_LATE).inc(len(result.late) - amended)
        for key, w in result.touched:
            self.live.offer(key, partition, w)
        for late in result.late:
            await self.send(LATE_TOPIC, late.reading.province.encode(),
                            late_message(late.reading, source_topic=topic, partition=partition, offset=late.offset,
                                         watermark_ms=late.watermark_ms, detected_ms=wall, amend=late.amend,
                                         window_s=self.settings.window_s))

    # --- timers --------------------------------------------------------------------------------------------

    def recovered(self) -> bool:
        """The table holds the changelog of every partition of the current assignment: Faust's recovery after the
        latest rebalance has completed. (Faust sets `recovery.completed` after its first recovery and never clears
        it; `on_revoked` clears it at each rebalance, and Faust sets it again when that rebalance's recovery ends.)"""
        recovery: Any = self.app.tables.recovery  # type: ignore[attr-defined]  # untyped in faust
        return bool(recovery.completed.is_set() and not recovery.in_recovery)

    async def on_revoked(self) -> None:
        """A rebalance begins (Faust revokes every partition first, then assigns the new set and replays the
        changelog of each assigned partition into the live table, from the start for a partition new to this
        worker). Until that replay ends, windows are neither closed nor advanced: a partially replayed partition
        holds an old partition state and old or missing windows. And what was absorbed goes to the changelog now,
        so the replay of this worker's own partitions ends where the live table stands."""
        recovery: Any = self.app.tables.recovery  # type: ignore[attr-defined]
        recovery.completed.clear()
        await self.write_changelog()

    async def close_windows(self) -> None:
        if not self.recovered():
            return  # windows are only complete once the changelog has been replayed
        wall = now_ms()
        started = time.perf_counter()
        owned = self.owned_now()
        # moved watermarks: in the changelog by the next commit
        self.engine.advance_idle(wall, lambda topic, partition: self.caught_up(topic, partition, owned))
        due = self.engine.due_windows(owned)
        for key, _partition, _w in due:
            self.live.forget(key)
        await self.publish_live(wall)  # updates held back by the throttle
        if not due:
            return
        futures = []
        for _key, partition, w in due:
            futures.append(await self.send(AGG_TOPIC, w.province.encode(), self.to_message(w, partition, wall)))
        for fut in futures:
            await fut  # durable on agg.1m before the window is forgotten
        for key, partition, _w in due:
            self.engine.forget(key, partition)
        await self.write_changelog()  # the tombstones now, so a restart does not close these windows again
        self.counters.windows_closed += len(due)
        metrics.WINDOWS_CLOSED.inc(len(due))
        by_start: dict[int, int] = defaultdict(int)
        for _key, _p, w in due:
            by_start[w.window_start_ms] += 1
        log.info("windows closed", windows=len(due), by_window_start={str(k): v for k, v in sorted(by_start.items())},
                 topic_partitions=len({(w.topic, p) for _k, p, w in due}))
        elapsed = time.perf_counter() - started
        metrics.WINDOW_CLOSE_SECONDS.observe(elapsed)
        self.counters.slowest_close_ms = max(self.counters.slowest_close_ms, round(elapsed * 1000))

    def log_assignment(self, assigned: set[TP]) -> None:
        """One line per rebalance: how many source partitions and which changelog partitions (active, standby)
        this worker now holds, and whether a changelog recovery was already complete (an in-process rebalance)."""
        changelog = self.table.changelog_topic.get_topic_name()
        actives, standbys = self.app.assignor.assigned_actives(), self.app.assignor.assigned_standbys()
        self.assignments += 1
        log.info("partitions assigned", nth=self.assignments,
                 source=sum(1 for tp in assigned if tp.topic in self.source_topics),
                 source_partitions=sorted({tp.partition for tp in assigned if tp.topic in self.source_topics}),
                 changelog_active=sorted(tp.partition for tp in actives if tp.topic == changelog),
                 changelog_standby=sorted(tp.partition for tp in standbys if tp.topic == changelog),
                 generation=self.app.consumer_generation_id,
                 processing_guarantee=str(self.app.conf.processing_guarantee.value),
                 recovered_before=self.app.tables.recovery.completed.is_set())  # type: ignore[attr-defined]

    def report(self) -> None:
        check = self.owned_now()
        owned = [tp for tp in self.app.assignor.assigned_actives() if tp.topic in self.source_topics]
        behind = sum(1 for tp in owned if not self.caught_up(tp.topic, tp.partition, check))
        log.info("streams progress", open_windows=self.engine.open_windows(), partitions=len(owned),
                 partitions_behind=behind, **self.counters.report())


def message_verdicts(msg: Any, catalog: Catalog, *, max_future_ms: int,
                     max_past_ms: int) -> list[Reading | Rejection]:
    """The verdicts on one Faust ConsumerMessage of a feed topic, against the broker's timestamp: the sink judges
    the same record the same way (sinks/rows.convert; tests/unit/test_verdict_parity.py)."""
    feed = catalog.feed_for_topic(msg.topic)
    return decode_message(msg.value, catalog, ref_ms=round(msg.timestamp * 1000), max_future_ms=max_future_ms,
                          max_past_ms=max_past_ms, topic_feed=feed.id if feed else None,
                          agency=agency_of(msg.headers))


def build_app(settings: Settings, catalog: Catalog) -> faust.App:
    app = faust_app(settings)
    source = app.topic(*catalog.topics, value_serializer="raw", key_serializer="raw")
    table = app.Table(CHANGELOG_TABLE, default=None, partitions=settings.topic_partitions,
                      key_type=bytes, value_type=bytes,  # bytes ⇒ raw serializers
                      extra_topic_configs={"min.insync.replicas": str(settings.topic_min_insync_replicas)})
    worker = Worker(settings, catalog, app, table)

    @app.agent(source)
    async def process(stream: faust.StreamT) -> None:
        faust_patches.before_commit(app.consumer, worker.write_changelog)
        aiter(stream.channel)  # subscribes: Faust's conductor and consumer group assign the source partitions
        bulk = faust_patches.BulkSource(app, frozenset(catalog.topics), settings.stream_batch_max,
                                        settings.stream_fetch_max)
        await bulk.consume(worker.process)

    @app.timer(0.5)
    async def close_windows() -> None:
        await worker.close_windows()

    @app.timer(metrics.LAG_SAMPLE_S)
    async def sample_lag() -> None:
        worker.sample_lag()

    @app.timer(settings.streams_report_s)
    async def report() -> None:
        worker.report()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode's receiver type wants a positional-only sender
    async def rebalance_begins(_sender: Any, _revoked: set[TP], **_kw: Any) -> None:
        await worker.on_revoked()

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode's receiver type wants a positional-only sender
    async def log_assignment(_sender: Any, assigned: set[TP], **_kw: Any) -> None:
        worker.log_assignment(assigned)

    app.conf.controlroom_counters = worker.counters  # for tests and the benchmark
    return app
