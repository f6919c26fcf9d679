"""The sink: Kafka → ClickHouse in micro-batches; offsets are committed only after the inserts.

Raw readings come straight from feeds.<feed> (validated with the same function as the worker,
against the message's own timestamp, so both agree); dead letters, late readings and closed
windows come from the worker's topics. One insert per table per flush, with a dedup token.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from controlroom.catalog import Catalog
from controlroom.errors import WarehouseError
from controlroom.kafka import all_topics, ensure_topics
from controlroom.logs import get_logger
from controlroom.settings import Settings
from sinks import rows
from sinks.warehouse import Warehouse

log = get_logger("sink")


@dataclass
class SinkStats:
    rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    batches: int = 0
    rejected: int = 0  # invalid readings skipped here (dead-lettered by the worker)
    last_flush_s: float | None = None
    last_flush_monotonic: float | None = None
    last_error: str | None = None


class SinkWriter:
    def __init__(self, settings: Settings, catalog: Catalog, warehouse: Warehouse) -> None:
        self.settings = settings
        self.catalog = catalog
        self.wh = warehouse
        self.stats = SinkStats()
        self._buffer: list[rows.Record] = []

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            *all_topics(self.catalog),
            bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=self.settings.sink_group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # On Tansu a group join waits about session_timeout/2: keep it short.
            session_timeout_ms=6000, heartbeat_interval_ms=1000, rebalance_timeout_ms=6000,
            max_poll_records=self.settings.sink_batch_rows,
            fetch_max_bytes=64 << 20, max_partition_fetch_bytes=8 << 20,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_topics(self.settings, all_topics(self.catalog))
        consumer = self._consumer()
        await consumer.start()
        log.info("sink started", topics=len(all_topics(self.catalog)))
        last_flush = time.monotonic()
        try:
            while not stop.is_set():
                polled = await consumer.getmany(timeout_ms=200, max_records=self.settings.sink_batch_rows)
                for tp, recs in polled.items():
                    self._buffer.extend(rows.Record(tp.topic, tp.partition, r.offset, r.timestamp, r.value)
                                        for r in recs)
                due = time.monotonic() - last_flush >= self.settings.sink_flush_interval_s
                if self._buffer and (due or len(self._buffer) >= self.settings.sink_batch_rows):
                    await self._flush_and_commit(consumer, stop)
                    last_flush = time.monotonic()
            if self._buffer:
                await self._flush_and_commit(consumer, stop, final=True)
        finally:
            await consumer.stop()
            log.info("sink stopped", rows=dict(self.stats.rows))

    async def _flush_and_commit(self, consumer: AIOKafkaConsumer, stop: asyncio.Event, final: bool = False) -> None:
        batch, self._buffer = self._buffer, []
        backoff = 0.5
        while True:
            try:
                await asyncio.to_thread(self.write, batch)
                break
            except WarehouseError as exc:
                self.stats.last_error = str(exc)[:300]
                log.error("insert failed; will retry", error=str(exc)[:300], records=len(batch))
                if stop.is_set() and final:
                    return  # not committed: the next start reads these records again
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 8.0)
        offsets: dict[TopicPartition, int] = {}
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        await consumer.commit(offsets)

    def write(self, batch: list[rows.Record]) -> dict[str, int]:
        """Insert one batch: one insert per target table. Blocking; safe to repeat (dedup)."""
        started = time.monotonic()
        by_target: dict[str, list[rows.Record]] = defaultdict(list)
        for r in batch:
            by_target[rows.target_of(r.topic)].append(r)
        written: dict[str, int] = {}
        db = self.wh.database
        for target, recs in by_target.items():
            if target == "readings":
                table, rejected = rows.readings_table(
                    recs, self.catalog, max_future_ms=int(self.settings.max_future_s * 1000),
                    ingested_ms=int(time.time() * 1000))
                self.stats.rejected += rejected
            elif target == "agg_1m":
                table = rows.agg_table(recs)
            elif target == "dead_letters":
                table = rows.dead_letters_table(recs, self.catalog)
            else:
                table = rows.late_table(recs)
            self.wh.insert_arrow(f"{db}.{target}", table, rows.dedup_token(target, recs))
            written[target] = table.num_rows
        for target, n in written.items():
            self.stats.rows[target] += n
        self.stats.batches += 1
        self.stats.last_flush_s = round(time.monotonic() - started, 4)
        self.stats.last_flush_monotonic = time.monotonic()
        return written
