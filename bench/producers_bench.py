"""`make bench`, producers: the same one-reading messages published through send_all (the simulator's and replay's
path) with aiokafka (controlroom.kafka.make_producer: /ingest, alerter, notifier) and with confluent-kafka
(producers.rdkafka: the simulator and replay), alternately on one broker, so the ratio holds on a noisy machine.
Both with acks=all, idempotence as the broker allows, 5 ms linger, the sender header on every message, and the same
partitioner (murmur2)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from controlroom.catalog import default_catalog
from controlroom.kafka import make_producer
from controlroom.settings import Settings
from producers.publisher import send_all
from producers.rdkafka import RdKafkaProducer

Message = tuple[str, bytes, bytes]


def _publish(settings: Settings, messages: list[Message], client: str) -> float:
    """Seconds to publish `messages` through send_all (the simulator's and replay's path), ticks of 10,000."""
    async def run() -> float:
        producer = make_producer(settings) if client == "aiokafka" else RdKafkaProducer(settings)
        await producer.start()
        try:
            started = time.perf_counter()
            for i in range(0, len(messages), 10_000):
                await send_all(producer, default_catalog(), messages[i:i + 10_000])
            return time.perf_counter() - started
        finally:
            await producer.stop()

    return asyncio.run(run())


def bench_producers(settings: Settings, messages: list[Message], rounds: int = 2) -> dict[str, Any]:
    """messages/s of each client, best of `rounds` alternating runs."""
    best = {"aiokafka": 0.0, "confluent_kafka": 0.0}
    for _ in range(rounds):
        for name in best:
            best[name] = max(best[name], len(messages) / _publish(settings, messages, name))
    return {"messages": len(messages), "aiokafka_msgs_per_s": round(best["aiokafka"]),
            "confluent_kafka_msgs_per_s": round(best["confluent_kafka"]),
            "ratio": round(best["confluent_kafka"] / best["aiokafka"], 2)}
