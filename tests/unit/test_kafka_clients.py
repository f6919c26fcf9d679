"""The Kafka consumer factory and poll helper (controlroom/kafka.py), without a broker: aiokafka consumers
are built (not started) inside the test's event loop; the poll loop runs against a stub consumer."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from controlroom import kafka
from controlroom.kafka import DEFAULT_FETCH_MAX_WAIT_MS, FETCH_MAX_WAIT_MS, make_consumer, polls
from controlroom.settings import Settings

GROUP_TIMEOUTS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "rebalance_timeout_ms": 6000}


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every consumer the factory builds: its topics and options (the real consumer is built too, so aiokafka
    accepts them)."""
    calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def spy(*topics: str, **options: Any) -> AIOKafkaConsumer:
        calls.append((topics, options))
        return AIOKafkaConsumer(*topics, **options)

    monkeypatch.setattr(kafka, "AIOKafkaConsumer", spy)
    return calls


def settings() -> Settings:
    return Settings(kafka_bootstrap="broker.test:9092")


async def test_group_member_gets_the_short_group_timeouts(built: list[Any]) -> None:
    consumer = make_consumer(settings(), "alerts", group_id="notifier", fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                             max_poll_records=7)
    assert isinstance(consumer, AIOKafkaConsumer)
    assert consumer.subscription() == {"alerts"}
    assert built == [(("alerts",), {
        "bootstrap_servers": "broker.test:9092", "group_id": "notifier", "enable_auto_commit": False,
        "auto_offset_reset": "earliest", "fetch_max_wait_ms": 50, **GROUP_TIMEOUTS, "max_poll_records": 7})]


async def test_reader_without_group_keeps_aiokafka_timeouts(built: list[Any]) -> None:
    make_consumer(settings(), "alerts", "agg.live", offset_reset="latest")
    make_consumer(settings(), max_partition_fetch_bytes=8 << 20)  # assigned later, like the alerter's
    assert built == [
        (("alerts", "agg.live"), {"bootstrap_servers": "broker.test:9092", "group_id": None,
                                  "enable_auto_commit": False, "auto_offset_reset": "latest",
                                  "fetch_max_wait_ms": DEFAULT_FETCH_MAX_WAIT_MS}),
        ((), {"bootstrap_servers": "broker.test:9092", "group_id": None, "enable_auto_commit": False,
              "auto_offset_reset": "earliest", "fetch_max_wait_ms": DEFAULT_FETCH_MAX_WAIT_MS,
              "max_partition_fetch_bytes": 8 << 20}),
    ]


def test_default_fetch_wait_is_aiokafkas_own() -> None:
    assert inspect.signature(AIOKafkaConsumer).parameters["fetch_max_wait_ms"].default == DEFAULT_FETCH_MAX_WAIT_MS


def test_faust_worker_shortens_its_fetch_wait_to_the_same_value() -> None:
    from streams import faust_patches

    assert faust_patches.FETCH_MAX_WAIT_MS is kafka.FETCH_MAX_WAIT_MS


class StubConsumer:
    """Answers each getmany with the next result; an exception is raised."""

    def __init__(self, *results: object) -> None:
        self.results = list(results)
        self.calls: list[tuple[int, int | None]] = []

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        self.calls.append((timeout_ms, max_records))
        result = self.results.pop(0)
        if isinstance(result, BaseException):
            raise result
        return result


class Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, object]]] = []

    def warning(self, message: str, **fields: object) -> None:
        self.warnings.append((message, fields))


async def test_failed_poll_is_logged_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "POLL_RETRY_S", 0.0)
    tp = TopicPartition("alerts", 0)
    error = KafkaConnectionError("broker gone")
    consumer = StubConsumer(error, {tp: ["r1"]}, {})
    log, stop, batches = Log(), asyncio.Event(), []
    async for polled in polls(consumer, stop, log, timeout_ms=200, max_records=5, topic="alerts"):  # type: ignore[arg-type]
        batches.append(polled)
        if len(batches) == 2:
            stop.set()
    assert batches == [{tp: ["r1"]}, {}]  # empty polls are yielded too: the caller's timers run
    assert consumer.calls == [(200, 5)] * 3
    assert log.warnings == [("poll failed", {"topic": "alerts", "error": repr(error)})]


async def test_poll_stops_when_told_and_other_errors_are_the_callers() -> None:
    stop = asyncio.Event()
    stop.set()
    consumer = StubConsumer()
    assert [p async for p in polls(consumer, stop, Log(), timeout_ms=100)] == []  # type: ignore[arg-type]
    assert consumer.calls == []
    with pytest.raises(ValueError):
        async for _ in polls(StubConsumer(ValueError("bug")), asyncio.Event(), Log(), timeout_ms=100):  # type: ignore[arg-type]
            pass


def test_failed_poll_waits_a_second_before_trying_again() -> None:
    assert kafka.POLL_RETRY_S == 1.0
