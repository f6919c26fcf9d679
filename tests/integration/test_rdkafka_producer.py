"""The simulator's and replay's librdkafka producer (producers/rdkafka.py) against aiokafka's: each key lands on the
partition aiokafka picks (the worker's partitions and their changelog must not move with the client), compressed
batches (lz4, the default) are read by the aiokafka consumers, headers arrive, and a failed delivery raises."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import KafkaException

from controlroom.catalog import Catalog
from controlroom.kafka import ensure_topics, make_producer
from producers.publisher import send_all
from producers.rdkafka import RdKafkaProducer

pytestmark = pytest.mark.integration


async def read(bootstrap: str, topic: str, n: int) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    got: list = []  # type: ignore[type-arg]
    try:
        for _ in range(60):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
            if len(got) >= n:
                break
    finally:
        await consumer.stop()
    return got


async def test_librdkafka_keys_land_where_aiokafka_puts_them(any_broker: str, make_settings,  # type: ignore[no-untyped-def]
                                                             catalog: Catalog) -> None:
    settings = make_settings(kafka_bootstrap=any_broker, topic_partitions=8)
    topic = catalog.feeds["water_level"].topic
    await ensure_topics(settings, [topic])
    keys = [p.encode() for p in sorted(catalog.provinces)] + [b"00", b"legacy-77", b""]
    for n, producer in enumerate((make_producer(settings), RdKafkaProducer(settings))):
        await producer.start()
        try:
            await send_all(producer, catalog, [(topic, key, f'{{"n":{n}}}'.encode()) for key in keys])
        finally:
            await producer.stop()
    got = await read(any_broker, topic, 2 * len(keys))
    assert len(got) == 2 * len(keys)
    by_client: dict[bytes, dict[bytes | None, int]] = {}
    for r in got:
        by_client.setdefault(r.value, {})[r.key] = r.partition
    aiokafka_side, rdkafka_side = by_client[b'{"n":0}'], by_client[b'{"n":1}']
    assert rdkafka_side == aiokafka_side
    assert len(set(aiokafka_side.values())) > 4  # the keys do spread over the partitions
    sent_as = {r.key: dict(r.headers).get("agency") for r in got if r.value == b'{"n":1}'}
    assert sent_as[b"01"] == catalog.registry.supplier("water_level", "01").encode()


async def test_a_failed_delivery_raises(make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    producer = RdKafkaProducer(make_settings(kafka_bootstrap="127.0.0.1:1"),  # nothing listens there
                               **{"message.timeout.ms": 1500})
    await producer.start()
    with pytest.raises(KafkaException, match="MSG_TIMED_OUT|timed out"):
        await send_all(producer, catalog, [("feeds.water_level", b"01", b"{}")])
    await producer.stop()
