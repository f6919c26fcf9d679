"""Two small patches of Faust internals the worker needs, kept apart so they are easy to find and to drop.

- `shorten_fetch_wait`: Faust hard-codes a 1.5 s fetch wait for its consumer. A broker may hold a fetch that
  long when the partitions it asks for have nothing new at that instant (Tansu does), so a reading could sit
  1.5 s before the worker saw it: event → alert was 0.8 s at the median, 2 s at p99. The wait is the
  consumer's own attribute, read when it starts; it is shortened right after Faust builds it.
- `before_commit`: the worker's coalesced changelog (streams/changelog.py) must be sent before Faust commits
  source offsets (Faust flushes the producer between the two), so the consumer's commit is wrapped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from mode.utils.futures import notify

from controlroom.kafka import FETCH_MAX_WAIT_MS


def shorten_fetch_wait() -> None:
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


def before_commit(consumer: Any, hook: Callable[[], Awaitable[None]]) -> None:
    """Run `hook` before every offset commit of this Faust consumer (its type hides _commit_offsets)."""
    commit = consumer._commit_offsets
    if getattr(commit, "controlroom_patched", False):
        return

    async def commit_after_hook(offsets: Any, start_new_transaction: bool = True) -> bool:
        await hook()
        return bool(await commit(offsets, start_new_transaction=start_new_transaction))

    commit_after_hook.controlroom_patched = True  # type: ignore[attr-defined]
    consumer._commit_offsets = commit_after_hook


BULK_ATTR = "controlroom_bulk"  # on the faust.App: its consumer hands these topics' records over a fetch at a time


class BulkSource:
    """The records of `topics`, handed from Faust's consumer to one handler a whole fetch at a time.

    Faust delivers each record on its own: a task per message (`wait_first`), an Event, a queue put and get,
    processors, sensors and an ack, about 100 µs a message here (a worker did 9.7k one-reading messages/s). Here
    the consumer's `getmany` (patched by `bulk_fetch`) puts each fetch's records of these topics, as Faust's
    ConsumerMessages, on a short queue; `consume` takes what is queued, tracks it as Faust's streams do (the
    consumer's unacked set: a rebalance waits for it), runs the handler and acks every message to Faust's
    consumer. Offsets, commits, gaps, transactions and the changelog stay Faust's. Records of other topics
    (the changelog during recovery) go Faust's usual way."""

    def __init__(self, app: Any, topics: frozenset[str], max_messages: int, max_fetch: int,
                 fetch_bytes: int = 8 << 20) -> None:
        self.app, self.topics, self.max_messages = app, topics, max_messages
        # records per fetch: up to `max_fetch` (each fetch wakes two threads: 2,000 one-reading messages cost
        # ~20 % less CPU each than 500), but about `fetch_bytes` of them, so batched sources (~15 kB a message)
        # fetch as few as before and memory stays where it was (a 2,000-message fetch of those: +35 MB)
        self.max_fetch, self.fetch_bytes = max_fetch, fetch_bytes
        self.queue: asyncio.Queue[tuple[int, list[list[Any]]]] = asyncio.Queue(maxsize=1)  # in fetches
        setattr(app, BULK_ATTR, self)

    async def consume(self, handle: Callable[[list[Any]], Awaitable[None]]) -> None:
        consumer = self.app.consumer
        pending: list[Any] = []  # the rest of a fetch larger than one batch
        pending_generation = -1
        while True:
            if pending_generation != self.app.consumer_generation_id or not self.app.flow_control.is_active():
                pending = []  # a rebalance began since it was fetched
            if not pending:
                pending_generation, fetched = await self.queue.get()
                pending = self._current(pending_generation, fetched)
            while len(pending) < self.max_messages and not self.queue.empty():
                generation, fetched = self.queue.get_nowait()
                pending += self._current(generation, fetched)
            batch, pending = pending[:self.max_messages], pending[self.max_messages:]
            if not batch:
                continue
            # a rebalance waits (Consumer.wait_empty) while the unacked set holds anything: one message of the
            # batch is enough, since the batch is acked as a whole
            batch[-1].tracked = True
            consumer.unacked.add(batch[-1])
            # what Faust's stream sensor records per event: its consumer thread warns of a stalled stream without it
            inbound, now = self.app.monitor.stream_inbound_time, time.monotonic()
            for tp in {m.tp for m in batch}:
                inbound[tp] = now
            await handle(batch)  # on an exception nothing is acked: the offsets stay where they were
            ack_all(consumer, batch)

    def _current(self, generation_id: int, fetched: list[list[Any]]) -> list[Any]:
        """The fetch's messages, or none when fetched before a rebalance began (Faust's streams skip those too:
        after it, the consumer reads again from the committed offsets)."""
        app = self.app
        if generation_id != app.consumer_generation_id or not app.flow_control.is_active():
            return []
        return [m for messages in fetched for m in messages]

    async def getmany(self, consumer: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        """Faust's Consumer.getmany, with this source's records queued whole instead of yielded one by one."""
        records, active = await consumer._wait_next_records(timeout)
        if records is None or consumer.should_stop:
            return
        if not consumer.flow_active:  # as Faust does: the next fetch starts from the committed offsets
            await consumer.perform_seek()
            return
        generation_id = self.app.consumer_generation_id
        fetched, others = [], {}
        for tp, tp_records in records.items():
            if active is not None and tp not in active and tp not in consumer._buffered_partitions:
                continue
            if tp.topic in self.topics:
                messages = await self._messages(consumer, tp, tp_records)
                if messages:
                    fetched.append(messages)
            else:
                others[tp] = tp_records
        if fetched:
            self._size_fetches(consumer, fetched)
            await self._put(consumer, generation_id, fetched)
        for tp, record in consumer.scheduler.iterate(others):
            if not consumer.flow_active or self.app.consumer_generation_id != generation_id:
                break
            self.app.monitor.track_tp_end_offset(tp, consumer.highwater(tp))
            yield tp, consumer._to_message(tp, record)

    def _size_fetches(self, consumer: Any, fetched: list[list[Any]]) -> None:
        """The next fetches' record count, from this one's message size (aiokafka reads it at each fetch)."""
        kafka = getattr(getattr(consumer, "_thread", None), "_consumer", None)
        if kafka is None:
            return
        n = sum(len(messages) for messages in fetched)
        size = sum(len(m.value or b"") for messages in fetched for m in messages) / n + 100  # + record overhead
        kafka._max_poll_records = max(self.max_messages, min(self.max_fetch, int(self.fetch_bytes / size)))

    async def _messages(self, consumer: Any, tp: Any, records: list[Any]) -> list[Any]:
        """What Faust's drain loop does per record: skip what was read already, register offset gaps (so the
        commit can pass them), advance the read offset."""
        read = consumer._read_offset[tp]
        acks = self.app.topics.acks_enabled_for(tp.topic)
        to_message = consumer._to_message
        out = []
        for record in records:
            offset = record.offset
            if read is not None and offset < read:
                continue
            if read and offset - read > 1 and acks:
                await consumer._add_gap(tp, read + 1, offset)
            out.append(to_message(tp, record))
            read = offset
        consumer._read_offset[tp] = read
        return out

    async def _put(self, consumer: Any, generation_id: int, fetched: list[list[Any]]) -> None:
        commit_every = consumer._commit_every
        if commit_every is not None and consumer._n_acked >= commit_every:
            consumer._n_acked = 0
            await consumer.commit()
        # waits while the handler is behind (the backlog stays in Kafka); a rebalance stops the wait
        await consumer.wait_first(self.queue.put((generation_id, fetched)), consumer.suspend_flow.wait())


def ack_all(consumer: Any, messages: list[Any]) -> None:
    """Faust's Consumer.ack for each message, with its lock taken once (acking was 5 % of the worker)."""
    from faust.types.tuples import ack_lock

    acked_total = 0
    with ack_lock:
        for message in messages:
            if message.acked:
                continue
            message.acked = True
            tp, offset = message.tp, message.offset
            if not consumer.app.topics.acks_enabled_for(message.topic):
                continue
            committed = consumer._committed_offset[tp]
            acked_index = consumer._acked_index[tp]
            if (committed is None or offset >= committed) and offset not in acked_index:
                acked_index.add(offset)
                consumer._acked[tp].append(offset)
                acked_total += 1
        consumer._unacked_messages.discard(messages[-1])
        consumer._n_acked += acked_total
    notify(consumer._waiting_for_ack)


def bulk_fetch() -> None:
    """Patch Faust's Consumer.getmany so an app with a BulkSource gets its topics' records a fetch at a time."""
    from faust.transport import consumer as base

    original = base.Consumer.getmany
    if getattr(original, "controlroom_patched", False):
        return

    async def getmany(self: Any, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
        bulk: BulkSource | None = getattr(self.app, BULK_ATTR, None)
        source = original(self, timeout) if bulk is None else bulk.getmany(self, timeout)
        async for item in source:
            yield item

    getmany.controlroom_patched = True  # type: ignore[attr-defined]
    base.Consumer.getmany = getmany  # type: ignore[method-assign]
