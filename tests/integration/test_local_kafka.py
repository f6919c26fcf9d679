"""The local Apache Kafka (`make up` where Java is, and the tests' apache_kafka cases): one KRaft node whose data
directory outlives it, and clear errors when it cannot start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from controlroom.broker import free_port, start_apache_kafka, stop_process
from controlroom.errors import StartupError
from controlroom.kafka import ensure_topics, make_consumer, make_producer
from controlroom.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("broker_kind", ["apache_kafka"], indirect=True)]

TOPIC = "t.durable"
TP = TopicPartition(TOPIC, 0)


async def read_as_group(settings: Settings, n: int, commit: bool) -> tuple[list[bytes], int | None]:
    """Up to n values as group "g" from where it stands (commit: their offsets too), and its committed offset."""
    consumer = make_consumer(settings, TOPIC, group_id="g")
    await consumer.start()
    try:
        read: list[bytes] = []
        for _ in range(30):
            for records in (await consumer.getmany(timeout_ms=500, max_records=n - len(read))).values():
                read += [r.value for r in records if r.value is not None]
            if len(read) >= n:
                break
        if commit:
            await consumer.commit()
        return read, await consumer.committed(TP)
    finally:
        await consumer.stop()


async def test_topics_offsets_and_unread_records_survive_a_restart(broker_kind: str, make_settings,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    data, log = tmp_path / "kafka", tmp_path / "broker.log"
    port = free_port()
    proc = start_apache_kafka(port, data, log)
    try:
        settings = make_settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=True)
        await ensure_topics(settings, [TOPIC])
        producer = make_producer(settings)
        await producer.start()
        try:
            for i in range(10):
                await producer.send(TOPIC, b"r%d" % i, partition=0)
            await producer.flush()
        finally:
            await producer.stop()
        read, committed = await read_as_group(settings, 6, commit=True)
    finally:
        stop_process(proc)
    assert read == [b"r%d" % i for i in range(6)] and committed == 6

    port = free_port()  # another port, the same data
    proc = start_apache_kafka(port, data, log)
    try:
        settings = make_settings(kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=True)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            described = {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics([TOPIC])}
        finally:
            await admin.close()
        rest, committed = await read_as_group(settings, 4, commit=False)
    finally:
        stop_process(proc)
    assert described == {TOPIC: settings.topic_partitions}
    assert committed == 6 and rest == [b"r6", b"r7", b"r8", b"r9"]  # only what the group had not read
    assert log.read_text().count("Kafka Server started") == 2


def test_a_taken_port_is_a_clear_error(broker_kind: str, tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        with pytest.raises(StartupError, match=f"port {port} is taken"):
            start_apache_kafka(port, tmp_path / "kafka")
