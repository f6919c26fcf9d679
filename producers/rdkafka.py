"""The simulator's and replay's producer on librdkafka (confluent-kafka), behind the two aiokafka calls they use
(`start`/`stop`, and `send` returning an awaitable delivery), so `send_all` serves both clients.

Measured in `make bench` (bench/producers_bench.py, one-reading messages, same broker, same run): librdkafka
publishes 2.4× what aiokafka does here (aiokafka builds every record batch in Python). Same delivery rules as
controlroom.kafka.make_producer: acks=all, idempotence where the broker has it, 5 ms linger, the topic's
compression, and Kafka's Java partitioner (murmur2): a province's readings go to the partition aiokafka (and every
Java client) would pick, so the worker's partitions and their changelog do not move when the client changes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from controlroom.settings import Settings

POLL_S = 0.05  # the delivery thread's longest wait for a delivery report


def rdkafka_config(settings: Settings) -> dict[str, Any]:
    return {"bootstrap.servers": settings.kafka_bootstrap, "acks": "all",
            "enable.idempotence": settings.kafka_idempotence, "linger.ms": 5, "partitioner": "murmur2_random",
            "compression.type": settings.kafka_compression, "queue.buffering.max.messages": 1_000_000}


class _Batch:
    """Delivery reports of one batch, counted in the delivery thread; one wake-up of the event loop at the end."""

    def __init__(self, n: int, loop: asyncio.AbstractEventLoop) -> None:
        self.left, self.error, self.loop = n, None, loop
        self.lock = threading.Lock()  # reports come from the delivery thread, and from flush() at stop
        self.done: asyncio.Future[None] = loop.create_future()

    def report(self, err: Any, _msg: Any) -> None:
        with self.lock:
            if err is not None and self.error is None:
                self.error = err
            self.left -= 1
            last = self.left == 0
        if last:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.done.done():
            if self.error is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(KafkaException(self.error))


class RdKafkaProducer:
    def __init__(self, settings: Settings, **config: Any) -> None:
        """`config`: librdkafka properties over rdkafka_config's (e.g. {"message.timeout.ms": 1500})."""
        self._producer = Producer(rdkafka_config(settings) | config)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    async def start(self) -> None:
        self._thread = threading.Thread(target=self._deliveries, name="rdkafka-deliveries", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        left = await asyncio.to_thread(self._producer.flush, 30)
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if left:
            raise KafkaException(f"{left} messages undelivered after 30 s")

    async def send_batch(self, messages: Sequence[tuple[str, bytes, bytes | None, Any]]) -> None:
        """Send (topic, value, key, headers) messages; return once the broker has every one of them (or raise the
        first delivery error). One awaitable per batch: a future per message cost more than aiokafka's send."""
        if not messages:
            return
        batch = _Batch(len(messages), asyncio.get_running_loop())
        produce, report = self._producer.produce, batch.report
        for topic, value, key, headers in messages:
            while True:
                try:
                    produce(topic, value, key, headers=headers, on_delivery=report)
                    break
                except BufferError:  # librdkafka's queue is full: wait for deliveries to make room
                    await asyncio.sleep(0.005)
        await batch.done

    def _deliveries(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(POLL_S)
