"""Kafka I/O helpers shared by producers, worker, sinks and API (aiokafka)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from controlroom.catalog import Catalog
from controlroom.errors import StartupError
from controlroom.metrics import LagProbe
from controlroom.schema import (
    AGG_TOPIC,
    ALERTS_TOPIC,
    CONTROL_TOPIC,
    DELIVERIES_TOPIC,
    DLQ_TOPIC,
    INCIDENTS_TOPIC,
    LATE_TOPIC,
    LIVE_TOPIC,
    NOTES_TOPIC,
    REPORTS_TOPIC,
)
from controlroom.settings import Settings

# commands are read whole and in order: one partition
SINGLE_PARTITION_TOPICS = (CONTROL_TOPIC,)
# Commands are replayed whole at every start (alerter, notifier) and keyed by kind, not by what they change:
# compaction would keep one command per kind. They are few and small: kept for ever.
KEPT_TOPICS = (CONTROL_TOPIC,)
# Read from the start to rebuild a state that is the newest record of each key: the notifier's deliveries (key:
# idempotency key) and the Alertmanager pusher's alerts (key: alert id). Compacted, so they stay bounded.
# The report submissions (reports.submitted, key form|period|unit) are read whole by the alerter to know who has
# reported; compaction keeps one record per report.
COMPACTED_TOPICS = (ALERTS_TOPIC, DELIVERIES_TOPIC, REPORTS_TOPIC)

# Consumer groups (the sink, the notifier, the Faust worker): on Tansu a group join waits about
# session_timeout/2, so every member keeps the session short (real Kafka is content with these too).
GROUP_SESSION_TIMEOUT_MS = 6000
GROUP_HEARTBEAT_INTERVAL_MS = 1000
GROUP_REBALANCE_TIMEOUT_MS = 6000
# How long a broker may hold a fetch when the partitions asked for have nothing new at that instant. A broker
# may hold it that long (Tansu does), and a record arriving meanwhile waits with it; so the readers on the path
# reading → alert → notification (worker, alerter, notifier) wait 50 ms: the end-to-end target is reading →
# webhook under 2 s.
FETCH_MAX_WAIT_MS = 50
# aiokafka's own fetch wait, kept by the other readers (the sink, the API's alert stream).
DEFAULT_FETCH_MAX_WAIT_MS = 500
POLL_RETRY_S = 1.0  # after a failed poll (the broker gone for a moment)


def all_topics(catalog: Catalog) -> list[str]:
    """The topics the sink stores (feeds, the worker's outputs, alert events, delivery attempts, incidents and
    alert notes)."""
    return [*catalog.topics, DLQ_TOPIC, LATE_TOPIC, AGG_TOPIC, ALERTS_TOPIC, DELIVERIES_TOPIC, INCIDENTS_TOPIC,
            NOTES_TOPIC]


def system_topics(catalog: Catalog) -> list[str]:
    """Every topic the system uses; `make up` and each service create the missing ones."""
    return [*all_topics(catalog), LIVE_TOPIC, REPORTS_TOPIC, *SINGLE_PARTITION_TOPICS]


class StartEnd:
    """Has a consumer reading partitions from their start reached where they ended when it started?

    The ends listed at start (ListOffsets) are raised to the high watermark of the first fetch of each
    partition: Tansu answers ListOffsets with the last batch's *first* offset + 1 (measured: 4 records in one
    batch → 1), so a reader trusting it declares itself caught up before the last batch — a notifier would
    not yet know the deliveries of that batch, an alerter would start its clock rules early.
    """

    def __init__(self, consumer: AIOKafkaConsumer, listed: Mapping[TopicPartition, int]) -> None:
        self.consumer = consumer
        self.listed = dict(listed)
        self.ends: dict[TopicPartition, int] = {}

    async def reached(self) -> bool:
        for tp, listed in self.listed.items():
            end = self.ends.get(tp)
            if end is None:
                high = self.consumer.highwater(tp)
                if high is None:  # not fetched yet
                    return False
                end = self.ends[tp] = max(listed, high)
            if await self.consumer.position(tp) < end:
                return False
        return True


def make_consumer(settings: Settings, *topics: str, group_id: str | None = None,
                  offset_reset: str = "earliest", fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
                  **extra: Any) -> AIOKafkaConsumer:
    """A consumer that commits only when told (never automatically) and starts at `offset_reset` where it has
    no committed offset (always, without a group, unless it seeks). A group member gets the short group
    timeouts above. The topics may be left out (assigned or subscribed later); `extra` are further aiokafka
    options (max_poll_records, fetch sizes)."""
    group: dict[str, Any] = {} if group_id is None else {
        "session_timeout_ms": GROUP_SESSION_TIMEOUT_MS, "heartbeat_interval_ms": GROUP_HEARTBEAT_INTERVAL_MS,
        "rebalance_timeout_ms": GROUP_REBALANCE_TIMEOUT_MS}
    return AIOKafkaConsumer(*topics, bootstrap_servers=settings.kafka_bootstrap, group_id=group_id,
                            enable_auto_commit=False, auto_offset_reset=offset_reset,
                            fetch_max_wait_ms=fetch_max_wait_ms, **group, **extra)


async def polls(consumer: AIOKafkaConsumer, stop: asyncio.Event, log: structlog.typing.FilteringBoundLogger, *,
                timeout_ms: int, max_records: int | None = None, lag_group: str | None = None,
                **context: object) -> AsyncIterator[dict[TopicPartition, Any]]:
    """Poll until `stop` is set, yielding every batch (empty ones too: the caller's timers run). A poll that
    fails is logged ("poll failed", with `context`) and tried again after POLL_RETRY_S; the caller keeps
    what it buffered and its offsets uncommitted meanwhile. With `lag_group`, the consumer's lag per partition
    is sampled for /metrics (controlroom_consumer_lag{group=lag_group}) as it goes."""
    probe = LagProbe(lag_group, consumer) if lag_group is not None else None
    while not stop.is_set():
        try:
            polled = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:
            log.warning("poll failed", **context, error=repr(exc))
            await asyncio.sleep(POLL_RETRY_S)
            continue
        if probe is not None:
            await probe.sample()
        yield polled


def make_producer(settings: Settings, **extra: object) -> AIOKafkaProducer:
    """Producer per the delivery rules: acks=all, idempotent where the broker supports it."""
    compression = None if settings.kafka_compression == "none" else settings.kafka_compression
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        compression_type=compression,
        linger_ms=5,
        max_batch_size=1 << 20,
        **extra,
    )


def topic_config(settings: Settings, topic: str) -> dict[str, str]:
    """Topic-level configs a topic is created with. Every other topic (readings, the worker's outputs, incidents,
    notes) is a buffer in front of ClickHouse: deleted after FEED_RETENTION_HOURS. A compacted topic keeps every
    record that long too (min.compaction.lag.ms), so a sink stopped for that long still finds the whole history."""
    retention_ms = str(int(settings.feed_retention_hours * 3_600_000))
    config = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    if topic in KEPT_TOPICS:
        return config | {"cleanup.policy": "delete", "retention.ms": "-1"}
    if topic in COMPACTED_TOPICS:
        return config | {"cleanup.policy": "compact", "min.compaction.lag.ms": retention_ms}
    return config | {"cleanup.policy": "delete", "retention.ms": retention_ms}


def new_topic(settings: Settings, topic: str) -> NewTopic:
    """A topic as ensure_topics creates it: partitions, replication (TOPIC_REPLICATION) and topic_config."""
    partitions = 1 if topic in SINGLE_PARTITION_TOPICS else settings.topic_partitions
    return NewTopic(topic, num_partitions=partitions, replication_factor=settings.topic_replication,
                    topic_configs=topic_config(settings, topic))


async def ensure_topics(settings: Settings, topics: list[str], *, timeout_s: float = 30.0) -> None:
    """Create missing topics (new_topic: partitions, replication, retention or compaction). An existing topic is
    left as it is: change its configs with kafka-configs.sh (README, Production). Clear error when no broker
    answers."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10_000)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.start()
            break
        except KafkaConnectionError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise StartupError(f"no Kafka broker answers at {settings.kafka_bootstrap}") from exc
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        new = [new_topic(settings, t) for t in topics if t not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created it first: fine
                await admin.create_topics(new)
        ordered = [t for t in topics if t in SINGLE_PARTITION_TOPICS and t in existing]
        if ordered:
            for meta in await admin.describe_topics(ordered):
                if len(meta.get("partitions") or []) > 1:  # e.g. auto-created by a producer before us
                    raise StartupError(
                        f"topic {meta['topic']} has {len(meta['partitions'])} partitions; it must have 1 so its "
                        "commands keep their order: delete it and start again (it is recreated with 1)")
    finally:
        await admin.close()
