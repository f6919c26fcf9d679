"""The sink: Kafka → ClickHouse in micro-batches; offsets are committed only after the inserts.

Raw readings come straight from feeds.<feed> (validated with the same function as the worker,
against the message's own timestamp, so both agree); dead letters, late readings and closed
windows come from the worker's topics. One insert per table per flush, each with a deterministic
dedup token, and the offsets of a flush are committed only once every insert of it succeeded.
A crash therefore re-reads at most the last uncommitted flush; re-inserting it is a no-op
(same token) or collapses by the ReplacingMergeTree identity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from controlroom import metrics
from controlroom.catalog import Catalog
from controlroom.errors import WarehouseError
from controlroom.kafka import all_topics, ensure_topics, make_consumer, polls
from controlroom.logs import get_logger
from controlroom.schema import now_ms
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse, table_in
from sinks import healer, recompute, rows
from sinks.recompute import Trigger
from sinks.rows import Record

log = get_logger("sink")

MAX_BACKOFF_S = 30.0
RECOMPUTE = "agg_1m recompute"  # a step of a batch's write, after its inserts (retried like a table)
HEAL_CHUNK = recompute.WINDOWS_PER_QUERY  # windows checked per query (the SQL lists them)
HEALED_MEMORY_S = 600  # how long a healed window is remembered, to tell a late worker from a lost window


@dataclass
class SinkStats:
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(rows.TABLES, 0))  # rows inserted per table
    records: int = 0  # Kafka records written and committed
    batches: int = 0  # flushes that completed (inserts + commit)
    rejected: int = 0  # invalid readings skipped here (the worker dead-letters them)
    malformed: int = 0  # unreadable messages on the worker's topics, skipped
    failed_inserts: int = 0
    last_flush_s: float | None = None  # duration of the last completed flush
    last_flush_monotonic: float | None = None  # time.monotonic() when it completed
    last_error: str | None = None
    committed: dict[str, int] = field(default_factory=dict)  # "topic:partition" → next offset to read
    recomputed: int = 0  # agg_1m windows written recomputed from raw readings (closes and amendments)
    waiting_triggers: int = 0  # windows closed whose raw readings are not stored yet
    healed: int = 0  # windows the sink recomputed itself: no (or an outdated) aggregate after they closed
    healed_then_closed: int = 0  # of those, windows the worker closed afterwards after all (late, not lost)
    unchecked: int = 0  # windows of stored readings not checked yet (sinks/healer.py)


def _ranges_text(records: Sequence[Record]) -> dict[str, str]:
    return {f"{t}:{p}": f"{lo}-{hi}" for (t, p), (lo, hi) in sorted(rows.offset_ranges(records).items())}


class _DropRevoked(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Buffered records of a partition we lose are dropped: uncommitted, so its next owner reads them again."""

    def __init__(self, writer: SinkWriter) -> None:
        self.writer = writer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.writer.drop_partitions({(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("sink partitions assigned", partitions=len(assigned))


class SinkWriter:
    def __init__(self, settings: Settings, catalog: Catalog, warehouse: Warehouse) -> None:
        self.settings = settings
        self.catalog = catalog
        self.wh = warehouse
        self.stats = SinkStats()
        self._pending: list[Record] = []
        self._max_future_ms = int(settings.max_future_s * 1000)
        # raw readings stored, per feed topic-partition: the highest offset written (a recompute waits for it)
        self.stored_through: dict[tuple[str, int], int] = {}
        self.waiting: list[Trigger] = []  # closed/amended windows whose raw readings are not all stored yet
        self._written_to: dict[tuple[str, int], int] = {}  # per topic-partition: next offset after what we wrote
        self._max_past_ms = int(settings.max_past_s * 1000)
        self.healer = healer.Healer(window_ms=settings.window_s * 1000,
                                    lateness_ms=int(settings.allowed_lateness_s * 1000),
                                    idle_ms=int(settings.idle_advance_after_s * 1000),
                                    heal_after_ms=int(settings.sink_heal_after_s * 1000),
                                    amend_horizon_ms=int(settings.amend_horizon_s * 1000))
        # windows healed in the last HEALED_MEMORY_S (start, partition...: Trigger.window → wall ms): a worker's
        # trigger for one of them afterwards means the worker was late, not that it lost the window
        self._healed_recently: dict[tuple[str, str, str, int, int], int] = {}
        metrics.prepare(metrics.SINK_ROWS, rows.TABLES)

    # --- blocking part: conversion and inserts (run in a worker thread) ---------------------------

    def write(self, records: Sequence[Record], done: set[str] | None = None) -> dict[str, int]:
        """Insert one batch: one insert per target table, each with the batch's dedup token.

        Blocking; safe to call again with the same records (the tokens repeat). `done` holds the
        tables already written by an earlier attempt of this batch; each success is added to it.
        Returns rows written per table by this call.
        """
        done = set() if done is None else done
        by_target: dict[str, list[Record]] = {}
        for r in records:
            by_target.setdefault(rows.target_of(r.topic), []).append(r)
        conv = rows.convert(records, self.catalog, max_future_ms=self._max_future_ms,
                            max_past_ms=self._max_past_ms, ingested_ms=int(time.time() * 1000))
        if conv.malformed:
            log.warning("skipped unreadable messages", count=conv.malformed, first=list(conv.malformed_at[:5]))
        written: dict[str, int] = {}
        failed: dict[str, Exception] = {}
        for target, table in conv.tables.items():
            if target in done:
                continue
            try:
                if table.num_rows:
                    token = rows.dedup_token(target, by_target[target])
                    self.wh.insert_arrow(table_in(self.wh.database, target), table, token)
            except Exception as exc:  # try the other tables anyway: a healthy table keeps moving
                failed[target] = exc
                log.error("insert failed", table=target, rows=table.num_rows, error=f"{type(exc).__name__}: {exc}",
                          offsets=_ranges_text(by_target[target]))
                continue
            done.add(target)
            written[target] = table.num_rows
            self.stats.rows[target] = self.stats.rows.get(target, 0) + table.num_rows
            metrics.SINK_ROWS.labels(target).inc(table.num_rows)
        if "readings" in written:  # counted once per batch, when its readings were written
            self.stats.rejected += conv.rejected
        self.stats.malformed += conv.malformed if written else 0
        if failed:
            first = next(iter(failed.values()))
            raise WarehouseError(f"insert into {', '.join(sorted(failed))} failed: {first}") from first
        if RECOMPUTE not in done:
            for (topic, partition), (_lo, hi) in rows.offset_ranges(by_target.get(rows.READINGS, [])).items():
                key = (topic, partition)
                self.stored_through[key] = max(self.stored_through.get(key, -1), hi)
            if rows.READINGS in conv.tables:
                self.healer.stored(healer.windows_of(conv.tables[rows.READINGS], self.settings.window_s * 1000),
                                   now_ms())
            self._note_late_closes(conv.triggers)
            recomputed = self.recompute(conv.triggers) + self.heal()
            if recomputed:
                written[rows.AGG] = written.get(rows.AGG, 0) + recomputed
            done.add(RECOMPUTE)
        return written

    def recompute(self, new: Sequence[Trigger]) -> int:
        """Write the windows whose raw readings are stored (recomputed from them); keep the others waiting.
        Blocking. Returns the number of windows written."""
        ready, waiting = recompute.split_ready([*self.waiting, *new], self.stored_through)
        for sql in recompute.recompute_sqls(self.wh.database, ready, self.settings.window_s):
            try:
                self.wh.command(sql)
            except Exception as exc:  # all kept waiting: a recompute written twice writes the same figures
                raise WarehouseError(f"recompute of {len(ready)} windows failed: {exc}") from exc
        self.waiting = waiting
        n = len({t.window for t in ready})
        self.stats.recomputed += n
        self.stats.waiting_triggers = len(waiting)
        return n

    def _note_late_closes(self, triggers: Sequence[Trigger]) -> None:
        if not self._healed_recently:
            return
        for t in triggers:
            if self._healed_recently.pop(t.window, None) is not None:
                self.stats.healed_then_closed += 1
        horizon = now_ms() - HEALED_MEMORY_S * 1000
        self._healed_recently = {k: at for k, at in self._healed_recently.items() if at >= horizon}

    def heal(self) -> int:
        """Check the windows of stored readings that closed `sink_heal_after_s` ago; recompute those whose stored
        aggregate differs from their readings (sinks/healer.py). Blocking. Returns the number recomputed."""
        due = self.healer.due(now_ms())
        healed = 0
        for start in range(0, len(due), HEAL_CHUNK):
            keys = due[start:start + HEAL_CHUNK]
            sql = recompute.check_sql(self.wh.database, keys, self.settings.window_s)
            if sql is None:
                continue
            try:
                have = {(r["feed"], r["province"], r["dims_key"], int(r["ws_ms"]), r["kafka_topic"],
                         int(r["kafka_partition"])): (int(r["n"]), int(r["rev"])) for r in self.wh.query(sql[0])}
                stored = {(r["feed"], r["province"], r["dims_key"], int(r["ws_ms"]), int(r["source_partition"])):
                          (int(r["n"]), int(r["rev"])) for r in self.wh.query(sql[1])}
                bad = healer.stale(keys, have, stored)
                fix = recompute.recompute_sql(self.wh.database, [
                    Trigger(f, p, d, ws, topic, part, have[(f, p, d, ws, topic, part)][1], (topic, part, -1))
                    for f, p, d, ws, topic, part in bad], self.settings.window_s)
                if fix is not None:
                    self.wh.command(fix)
            except Exception as exc:
                raise WarehouseError(f"check of {len(keys)} closed windows failed: {exc}") from exc
            self.healer.checked(keys)
            if bad:
                healed += len(bad)
                at = now_ms()
                self._healed_recently.update({(f, p, d, ws, part): at for f, p, d, ws, _topic, part in bad})
                log.warning("windows recomputed by the sink: their aggregate differed from their readings "
                            "after they closed (the worker lost them or is late)", windows=len(bad),
                            first=[list(k) for k in bad[:10]])
        self.stats.healed += healed
        self.stats.unchecked = len(self.healer.pending)
        if healed:
            metrics.SINK_HEALED.inc(healed)
        return healed

    # --- the loop -----------------------------------------------------------------------------------

    def drop_partitions(self, gone: set[tuple[str, int]]) -> None:
        """Forget what is buffered from partitions this sink no longer owns (all of it uncommitted)."""
        if not gone:
            return
        self._pending = [r for r in self._pending if (r.topic, r.partition) not in gone]
        # a trigger of a revoked partition is uncommitted too: its next owner recomputes that window
        self.waiting = [t for t in self.waiting if (t.at[0], t.at[1]) not in gone]
        self.stats.waiting_triggers = len(self.waiting)
        self.healer.drop_partitions(gone)
        for key in gone:
            self._written_to.pop(key, None)
            self.stats.committed.pop(f"{key[0]}:{key[1]}", None)

    def _consumer(self) -> AIOKafkaConsumer:
        # 16 MB a fetch (was 64): a sink that falls behind holds its prefetched backlog in memory, which the API
        # memory runs saw grow with the backlog (README Performance, API memory)
        return make_consumer(self.settings, group_id=self.settings.sink_group_id,
                             max_poll_records=max(self.settings.sink_batch_rows, 1000),
                             fetch_max_bytes=16 << 20, max_partition_fetch_bytes=8 << 20)

    def _due(self, last_flush: float) -> bool:
        if not self._pending:
            return False
        if time.monotonic() - last_flush >= self.settings.sink_flush_interval_s:
            return True
        if any(rows.target_of(r.topic) in rows.URGENT for r in self._pending):
            return True
        counts: dict[str, int] = {}
        for r in self._pending:
            t = rows.target_of(r.topic)
            counts[t] = counts.get(t, 0) + 1
        return max(counts.values()) >= self.settings.sink_batch_rows

    async def run(self, stop: asyncio.Event) -> None:
        """Consume, flush, commit until `stop` is set; then flush what is buffered and return. Never raises
        on a warehouse failure: it retries with backoff, keeping the batch and the offsets uncommitted."""
        topics = all_topics(self.catalog)
        await ensure_topics(self.settings, topics)
        consumer = self._consumer()
        consumer.subscribe(topics, listener=_DropRevoked(self))
        await consumer.start()
        log.info("sink started", topics=len(topics), group=self.settings.sink_group_id)
        last_flush = last_recheck = time.monotonic()
        try:
            async for polled in polls(consumer, stop, log, timeout_ms=200, max_records=self.settings.sink_batch_rows,
                                      lag_group=self.settings.sink_group_id):
                for tp, recs in polled.items():
                    self._pending.extend(Record.from_kafka(r) for r in recs)
                    metrics.SINK_RECORDS.labels(tp.topic).inc(len(recs))
                if self._due(last_flush):
                    await self._flush(consumer, stop)
                    last_flush = time.monotonic()
                elif not self._pending:
                    last_flush = time.monotonic()  # the interval counts from the first buffered record
                    if (self.waiting or self.healer.pending) and \
                            last_flush - last_recheck >= self.settings.sink_flush_interval_s:
                        await self._recheck(consumer)  # raw readings another sink stored; windows now closed
                        last_recheck = time.monotonic()
            if self._pending:
                await self._flush(consumer, stop, attempts=3)
        finally:
            await consumer.stop()
            log.info("sink stopped", rows=dict(self.stats.rows), batches=self.stats.batches,
                     recomputed=self.stats.recomputed, waiting_triggers=len(self.waiting), healed=self.stats.healed,
                     healed_then_closed=self.stats.healed_then_closed)
            if self.waiting:  # windows closed whose raw readings this sink never saw stored: say which
                log.warning("sink stopped with windows waiting for their raw readings",
                            triggers=[{"window": list(t.window), "topic": t.topic, "max_offset": t.max_offset,
                                       "stored_through": self.stored_through.get((t.topic, t.partition), -1),
                                       "at": list(t.at)} for t in self.waiting[:50]])

    async def _flush(self, consumer: AIOKafkaConsumer, stop: asyncio.Event, attempts: int | None = None) -> bool:
        """Write the buffered batch, retrying with backoff; commit its offsets only when all of it is written."""
        batch = self._pending
        self._pending = []
        done: set[str] = set()
        started = time.monotonic()
        backoff, tries = 0.5, 0
        while True:
            tries += 1
            try:
                await asyncio.to_thread(self.write, batch, done)
                break
            except Exception as exc:  # any failure keeps the batch: retried, never committed past
                self.stats.failed_inserts += 1
                metrics.SINK_FAILURES.inc()
                self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                log.warning("batch kept for retry", error=self.stats.last_error, attempt=tries,
                            tables_done=sorted(done), records=len(batch), retry_in_s=backoff)
                if (attempts is not None and tries >= attempts) or (stop.is_set() and attempts is None):
                    # not committed: the next start reads these records again
                    self._pending = batch + self._pending
                    return False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        await self._commit(consumer, batch)
        if self.waiting:  # raw readings another sink stores: learn how far through the group's commits
            await self._learn_stored(consumer)
        self.stats.records += len(batch)
        self.stats.batches += 1
        self.stats.last_flush_s = round(time.monotonic() - started, 4)
        metrics.BATCH_SECONDS.labels("sink").observe(time.monotonic() - started)
        self.stats.last_flush_monotonic = time.monotonic()
        self.stats.last_error = None
        return True

    async def _recheck(self, consumer: AIOKafkaConsumer) -> None:
        """Nothing new to read, but windows wait for raw readings (another member, or our last commit, may have
        stored them by now) or for their check (sinks/healer.py). Offsets held back behind the triggers written and
        the windows checked here are committed at once."""
        if self.waiting:
            await self._learn_stored(consumer)
        try:
            await asyncio.to_thread(lambda: self.recompute([]) + self.heal())
        except Exception as exc:  # kept waiting; tried again at the next flush
            self.stats.failed_inserts += 1
            metrics.SINK_FAILURES.inc()
            self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.warning("recompute kept for retry", error=self.stats.last_error, windows=len(self.waiting))
            return
        await self._commit(consumer, [])

    async def _learn_stored(self, consumer: AIOKafkaConsumer) -> None:
        """For the waiting triggers' source partitions: the group's committed offset means every reading
        before it is stored (by this sink or another member), so a recompute may read them."""
        for topic, partition in {(t.topic, t.partition) for t in self.waiting}:
            try:
                committed = await consumer.committed(TopicPartition(topic, partition))
            except KafkaError as exc:
                log.warning("committed offset unknown", topic=topic, partition=partition, error=repr(exc))
                continue
            if committed is not None:
                key = (topic, partition)
                self.stored_through[key] = max(self.stored_through.get(key, -1), committed - 1)

    async def _commit(self, consumer: AIOKafkaConsumer, batch: Sequence[Record]) -> None:
        """Commit what `batch` wrote, and what was held back behind triggers that have been written since."""
        for (topic, partition), (_lo, hi) in rows.offset_ranges(batch).items():
            self._written_to[(topic, partition)] = hi + 1
        assigned = consumer.assignment()
        caps = recompute.commit_caps(self.waiting)  # the worker's topics: behind triggers not yet written
        caps.update(self.healer.commit_caps())  # raw readings: behind windows not yet checked (disjoint topics)
        offsets: dict[TopicPartition, int] = {}
        for (topic, partition), upto in self._written_to.items():
            tp = TopicPartition(topic, partition)
            off = min(upto, caps.get((topic, partition), upto))
            if tp in assigned and off > self.stats.committed.get(f"{topic}:{partition}", -1):
                offsets[tp] = off
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # e.g. a rebalance took the partitions: the rows are written; whoever reads them again
            # writes them again, and the dedup token / ReplacingMergeTree identity keeps one copy
            log.warning("commit failed after a successful insert", error=repr(exc), offsets=_ranges_text(batch))
            return
        for tp, off in offsets.items():
            self.stats.committed[f"{tp.topic}:{tp.partition}"] = off
