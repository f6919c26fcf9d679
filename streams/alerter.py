"""The alerter service: one instance evaluates every rule (controlroom/alerts/core.py) and publishes alert
events on topic `alerts`. I/O only.

Why one instance: it reads aggregates, not readings — at most one live update per series per second
and one closed window per series per minute (2,146 series today) — so one process keeps up however
many streams workers share the readings, and it sees every province and feed at once (staleness,
national data-quality shares) with no state to hand over on a rebalance. Its state lives in a local
file, like Alertmanager's: a snapshot with the input positions it reflects, written atomically after
every batch that produced events (at most every `ALERTER_SNAPSHOT_S` otherwise).

Delivery: events are acknowledged by the broker before the snapshot that follows them is written.
A crash in between replays the inputs since the snapshot: the same conditions give the same
(alert_id, seq), which the sink's ReplacingMergeTree and the notifier's delivery log absorb. The
clock-driven rules wait until the alerter has caught up with its inputs, so a restart does not
mistake its own backlog for silent provinces, and once caught up it tells the core it has resumed: a series
not already alerting is given its staleness limit (and at least one cadence plus the lateness allowance)
from that moment, so the alerter's own downtime is not blamed on the agencies.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from controlroom import metrics
from controlroom.alerts.core import AlertingCore
from controlroom.alerts.inhibit import read_inhibit_rules
from controlroom.alerts.rules import read_rule_docs
from controlroom.catalog import Catalog
from controlroom.kafka import (
    FETCH_MAX_WAIT_MS,
    StartEnd,
    ensure_topics,
    make_consumer,
    make_producer,
    polls,
    system_topics,
)
from controlroom.logs import get_logger
from controlroom.schema import (
    AGG_TOPIC,
    ALERTS_TOPIC,
    CONTROL_TOPIC,
    DLQ_TOPIC,
    LATE_TOPIC,
    LIVE_TOPIC,
    REPORTS_TOPIC,
    AlertEvent,
    now_ms,
    read_control,
    read_dead_letter,
    read_late,
    read_live_windows,
    read_report_submitted,
    read_window,
)
from controlroom.settings import Settings
from streams.incidents import IncidentRunner

log = get_logger("alerter")

INPUTS = (CONTROL_TOPIC, LIVE_TOPIC, AGG_TOPIC, DLQ_TOPIC, LATE_TOPIC, REPORTS_TOPIC)


def state_path(settings: Settings) -> Path:
    return settings.data_dir / "alerter" / "state.bin"


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Alerter:
    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.core = AlertingCore(catalog, read_rule_docs(settings.alert_rules_file, catalog),
                                 window_s=settings.window_s, allowed_lateness_s=settings.allowed_lateness_s,
                                 grafana_url=settings.grafana_url,
                                 inhibit_rules=read_inhibit_rules(settings.alert_inhibit_file, catalog))
        self.incidents = IncidentRunner(settings, catalog, fresh=not state_path(settings).exists())
        self.caught_up = False
        self.stats: dict[str, int] = {"inputs": 0, "events": 0, "snapshots": 0, "malformed": 0}

    def handle(self, topic: str, value: bytes | None) -> list[AlertEvent]:
        """One input record → events. A record that cannot be read is counted and skipped."""
        try:
            if topic == LIVE_TOPIC:
                return [e for point in read_live_windows(value) for e in self.core.on_live(point)]
            if topic == AGG_TOPIC:
                return self.core.on_closed(read_window(value))
            if topic == DLQ_TOPIC:
                return self.core.on_dead_letter(read_dead_letter(value))
            if topic == LATE_TOPIC:
                return self.core.on_late(read_late(value))
            if topic == REPORTS_TOPIC:
                return self.core.on_report(read_report_submitted(value))
            command = read_control(value)
            self.incidents.on_control(command)
            return self.core.on_control(command)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self.stats["malformed"] += 1
            log.warning("input skipped", topic=topic, error=f"{type(exc).__name__}: {exc}")
            return []

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        await ensure_topics(s, system_topics(self.catalog))
        positions: dict[str, int] = {}
        path = state_path(s)
        if path.exists():
            positions = self.core.restore(path.read_bytes())
            log.info("state restored", alerts=len(self.core.book.alerts), path=str(path))
        consumer = make_consumer(s, fetch_max_wait_ms=FETCH_MAX_WAIT_MS, max_partition_fetch_bytes=8 << 20)
        producer = make_producer(s)
        await consumer.start()
        await producer.start()
        try:
            # asked of the broker (the producer waits for the topic's metadata): a consumer that neither subscribed nor
            # was assigned knows only what its first metadata answer held, which is every topic on Tansu and none on
            # Apache Kafka (Metadata v1+ with an empty list) — the alerter would have read nothing
            tps = [TopicPartition(t, p) for t in INPUTS for p in sorted(await producer.partitions_for(t))]
            consumer.assign(tps)
            for tp in tps:
                pos = positions.get(f"{tp.topic}:{tp.partition}")
                if pos is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, pos)
            end = StartEnd(consumer, await consumer.end_offsets(tps))
            log.info("alerter started", rules=len(self.core.engine.rules), inputs=len(tps))
            await self._loop(consumer, producer, tps, end, stop)
        finally:
            await consumer.stop()
            await producer.stop()
            log.info("alerter stopped", **self.stats)

    async def _loop(self, consumer: AIOKafkaConsumer, producer: Any, tps: list[TopicPartition],
                    end: StartEnd, stop: asyncio.Event) -> None:
        s = self.settings
        last_tick = last_snapshot = 0.0
        dirty = False
        async for polled in polls(consumer, stop, log, timeout_ms=100, max_records=5000, lag_group="alerter"):
            events: list[AlertEvent] = []
            # commands first: a rule changed or a silence set applies to the data that came with it
            for tp in sorted(polled, key=lambda tp: tp.topic != CONTROL_TOPIC):
                for rec in polled[tp]:
                    events.extend(self.handle(tp.topic, rec.value))
                self.stats["inputs"] += len(polled[tp])
                metrics.ALERTER_INPUTS.labels(tp.topic).inc(len(polled[tp]))
                dirty = True
            if not self.caught_up:
                self.caught_up = await end.reached()
                if self.caught_up:
                    # staleness counts silence from here for series not already alerting: whatever they did
                    # not send while we were down is our downtime, not theirs
                    self.core.resumed(now_ms())
                    log.info("caught up with the inputs; clock-driven rules start", inputs=self.stats["inputs"])
            mono = time.monotonic()
            if self.caught_up and mono - last_tick >= s.alerter_tick_s:
                events.extend(self.core.tick(now_ms()))
                last_tick = mono
                dirty = True
            self.incidents.on_alerts(events)
            if events:
                await self._publish(producer, events)
            await self.incidents.publish(producer)
            if dirty and (events or mono - last_snapshot >= s.alerter_snapshot_s):
                offsets = {f"{tp.topic}:{tp.partition}": await consumer.position(tp) for tp in tps}
                await asyncio.to_thread(write_atomically, *self.incidents.snapshot())  # first: see streams/incidents.py
                data = self.core.snapshot(offsets)
                await asyncio.to_thread(write_atomically, state_path(s), data)
                self.stats["snapshots"] += 1
                last_snapshot, dirty = mono, False

    async def _publish(self, producer: Any, events: list[AlertEvent]) -> None:
        """Send and wait for the broker's acks: only then may a snapshot say these inputs are done."""
        futures = [await producer.send(ALERTS_TOPIC, orjson.dumps(e), key=e["alert_id"].encode()) for e in events]
        await asyncio.gather(*futures)
        self.stats["events"] += len(events)
        for e in events:
            metrics.ALERT_EVENTS.labels(e["state"], e["severity"]).inc()
            log.info("alert", alert_id=e["alert_id"], alert_event=e["event"], severity=e["severity"], rule=e["rule_id"],
                     feed=e["feed"], province=e["province"], seq=e["seq"], silenced=e["silenced"],
                     inhibited_by=e.get("inhibited_by"))
