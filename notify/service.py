"""The notifier: alert events (topic `alerts`) and incident events (topic `incidents`) → webhooks and e-mails,
every attempt recorded on `alerts.deliveries`.

How it runs
-----------
1. Reads `alerts.control` from the beginning (`subscription.put` / `subscription.delete`; other kinds are
   ignored) and `alerts.deliveries` from the beginning, up to the end offsets seen at start, before it
   touches an alert: the first gives the subscriptions, the second the *finished* idempotency keys
   (status delivered or dead_letter) and the attempt count of unfinished ones. Both topics are then
   followed for as long as the service runs (a subscription added later applies to later events; keys
   finished by another notifier of the group are learnt too).
2. Consumes `alerts` and `incidents` in its own consumer group (NOTIFY_GROUP_ID). For each event, the
   subscriptions it
   concerns (controlroom.alerts.subscriptions.matches: by the subscription's `kinds`) each get one job,
   idempotency key ``<alert_id>:<seq>:<subscription_id>`` (an incident event:
   ``incident-<incident_id>:<seq>:<subscription_id>``); a key already finished is skipped. A job joins its group
   (notify.grouping: the subscription's group_by, group_wait_s, group_interval_s, repeat_interval_s); a group
   that is due becomes one notification carrying every alert of the group. Notifications to different
   subscriptions run concurrently (at most NOTIFY_CONCURRENCY requests in flight, each bounded by
   NOTIFY_TIMEOUT_S); one subscription's notifications go out in order.
3. Each attempt is published on `alerts.deliveries`, one record per job it carries (same attempt, status and
   delivery id), and the broker's acknowledgement awaited before the next attempt starts (and while the
   attempt still holds its concurrency slot). 2xx → delivered; 3xx and 4xx except 408/429 → dead_letter at
   once; otherwise retry after NOTIFY_BACKOFF_S · 2^(n-1) (capped at NOTIFY_BACKOFF_MAX_S), and dead_letter
   after NOTIFY_MAX_ATTEMPTS. A `repeat` inside the subscription's repeat_interval_s is recorded `skipped`.
4. An event's offset is committed only once every job of it is finished (delivered, dead-lettered or
   skipped) and recorded: a job waiting in its group holds the commit of its partition (per topic-partition,
   so the same for `alerts` and `incidents`).
5. With ALERTMANAGER_URL set, notify.alertmanager pushes every alert's state to that Alertmanager as Prometheus
   does, from its own reader of `alerts`: independent of the above (it holds no offset and never raises).

The guarantee
-------------
At least once. Every matching event reaches every subscription (or is dead-lettered with the reason),
across crashes and restarts: an event's offset is committed only after its jobs are finished and
recorded, and a restart re-reads what was not committed. Groups live in memory: after a restart a
notification shows the alerts read since (the others are still firing, and notified already).

Duplicates: a restart skips every key whose final record is on `alerts.deliveries`, so the only
notification a receiver can get twice is one that was *in flight* when the process died by SIGKILL (or
a crash): the receiver had it, its record was not yet acknowledged. At most NOTIFY_CONCURRENCY such
notifications exist at any moment; after the restart their events may come in a differently composed
group, so receivers drop repeats by the per-event keys the body lists (`delivers`), not only by the
notification's key. On a graceful stop (SIGTERM/SIGINT) there are none: no new delivery
starts, attempts in flight finish and are recorded, pending retries are abandoned (a retry means the
receiver did not accept it), offsets are committed up to the first event with unfinished work, and the
next start does the rest, skipping what is finished. Receivers that must never act twice drop a repeated
``Idempotency-Key`` (e-mail: ``X-Idempotency-Key``).

The finished keys live in memory (the last REMEMBER_KEYS of them), rebuilt from `alerts.deliveries` at
start; topic retention must therefore outlast the time an event can stay uncommitted (minutes).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from controlroom import metrics
from controlroom.alerts.subscriptions import (
    Subscription,
    SubscriptionError,
    group_labels,
    is_incident,
    parse_subscription,
    recipients,
)
from controlroom.catalog import Catalog
from controlroom.errors import ConfigError, ControlRoomError, StartupError
from controlroom.kafka import FETCH_MAX_WAIT_MS, ensure_topics, make_consumer, make_producer, polls
from controlroom.logs import get_logger
from controlroom.schema import (
    ALERTS_TOPIC,
    CONTROL_TOPIC,
    DELIVERIES_TOPIC,
    INCIDENTS_TOPIC,
    AlertEvent,
    DeliveryRecord,
    MessageError,
    delivery_message,
    read_alert_event,
    read_control,
    read_delivery,
    read_incident_event,
)
from controlroom.settings import Settings
from notify.alertmanager import AlertmanagerPusher
from notify.channels import Channel, EmailChannel, WebhookChannel
from notify.follow import CATCH_UP_TIMEOUT_S, TopicFollower
from notify.formats import event_key
from notify.grouping import Dispatcher, Job, Notification
from notify.policy import FINAL_STATUSES, SKIPPED, backoff_s, redact_target, status_after

log = get_logger("notifier")

REMEMBER_KEYS = 1_000_000  # finished idempotency keys kept in memory (oldest forgotten first)
PUBLISH_TRIES = 20  # a delivery record that cannot be published stops the service (offsets stay uncommitted)


def master_key(settings: Settings) -> str:
    key = settings.notify_signing_key.get_secret_value() if settings.notify_signing_key else ""
    if not key:
        raise ConfigError("NOTIFY_SIGNING_KEY is not set: the notifier signs every webhook with secrets derived "
                          "from it (set it to a long random value, the same for every notifier)")
    return key


class DeliveryRecordError(ControlRoomError):
    """Attempts cannot be recorded on alerts.deliveries: the service stops with its offsets uncommitted."""


@dataclass
class NotifierStats:
    delivered: int = 0
    dead_letters: int = 0
    retries: int = 0  # attempts that will be tried again
    skipped: int = 0  # deliveries already finished before (after a restart or rebalance)
    repeats_skipped: int = 0  # `repeat` events inside a subscription's repeat_interval_s
    notifications: int = 0  # grouped notifications finished (each carries one or more deliveries)
    batches: int = 0
    malformed: int = 0  # unreadable alert events, skipped with a warning


class Notifier:
    def __init__(self, settings: Settings, catalog: Catalog, channels: Mapping[str, Channel] | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self._key = master_key(settings)
        self.channels: Mapping[str, Channel] = channels if channels is not None else {
            "webhook": WebhookChannel(settings, self._key, catalog), "email": EmailChannel(settings, catalog)}
        self.subscriptions: dict[str, Subscription] = {}
        self.finished: dict[str, None] = {}  # insertion-ordered set of finished idempotency keys
        self.attempted: dict[str, int] = {}  # unfinished key → attempts already made
        self.stats = NotifierStats()
        self.started = asyncio.Event()  # set once both topics are read and the alerts consumer runs
        self._producer: AIOKafkaProducer | None = None
        self._slots = asyncio.Semaphore(max(1, settings.notify_concurrency))
        self.dispatcher = Dispatcher()
        self.alertmanager: AlertmanagerPusher | None = None  # with ALERTMANAGER_URL, once run() starts
        self.read_through: dict[TopicPartition, int] = {}  # the last offset read per partition

    # --- state from the two followed topics -----------------------------------------------------------

    def apply_control(self, raw: bytes | None) -> None:
        try:
            doc = read_control(raw)
        except MessageError as exc:
            log.warning("unreadable control message skipped", error=str(exc)[:200])
            return
        kind = doc["kind"]
        if kind == "subscription.put":
            body = doc.get("subscription")
            if not isinstance(body, dict) or not isinstance(body.get("id"), str):
                log.warning("subscription.put without an id skipped")
                return
            try:
                sub = parse_subscription(body, self.catalog)
            except SubscriptionError as exc:
                log.warning("invalid subscription skipped", subscription_id=str(body.get("id"))[:64], error=str(exc))
                return
            self.subscriptions[sub.id] = sub
            log.info("subscription set", subscription_id=sub.id, channel=sub.channel, tier=sub.tier,
                     target=redact_target(sub.target), enabled=sub.enabled)
        elif kind == "subscription.delete":
            sid = str(doc.get("subscription_id"))
            if self.subscriptions.pop(sid, None) is not None:
                log.info("subscription deleted", subscription_id=sid)

    def apply_delivery(self, raw: bytes | None) -> None:
        try:
            doc = read_delivery(raw)
            key, status, attempt = doc["idempotency_key"], doc["status"], int(doc["attempt"])
        except (TypeError, ValueError):  # MessageError is a ValueError
            return
        if status in FINAL_STATUSES:
            self._finish(key)
        elif key not in self.finished:
            self.attempted[key] = max(attempt, self.attempted.get(key, 0))

    def _finish(self, key: str) -> None:
        self.attempted.pop(key, None)
        self.finished[key] = None
        if len(self.finished) > REMEMBER_KEYS:
            del self.finished[next(iter(self.finished))]

    # --- the loop ---------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Notify until `stop` is set; then finish the attempts in flight, commit, and return."""
        s = self.settings
        await ensure_topics(s, [ALERTS_TOPIC, INCIDENTS_TOPIC, CONTROL_TOPIC, DELIVERIES_TOPIC])
        self._producer = make_producer(s)
        await self._producer.start()
        followers = [TopicFollower(s, CONTROL_TOPIC, self.apply_control),
                     TopicFollower(s, DELIVERIES_TOPIC, self.apply_delivery)]
        tasks = [asyncio.create_task(f.run(stop), name=f"follow-{f.topic}") for f in followers]
        self.alertmanager = pusher = AlertmanagerPusher(s, self.catalog) if s.alertmanager_url else None
        if pusher is not None:  # its own reader of `alerts`; it never raises (see notify.alertmanager)
            tasks.append(asyncio.create_task(pusher.run(stop), name="alertmanager"))
        consumer = make_consumer(s, ALERTS_TOPIC, INCIDENTS_TOPIC, group_id=s.notify_group_id,
                                 fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
                                 max_poll_records=s.notify_batch_max)
        try:
            await self._catch_up(followers, tasks)
            await consumer.start()
            self.started.set()
            log.info("notifier started", subscriptions=len(self.subscriptions), finished_keys=len(self.finished),
                     group=s.notify_group_id)
            # short polls: a group falls due on time even while nothing arrives
            async for polled in polls(consumer, stop, log, timeout_ms=200, max_records=s.notify_batch_max,
                                      lag_group=s.notify_group_id):
                await self._step(consumer, polled, stop)
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await consumer.stop()
            await self._producer.stop()
            for channel in self.channels.values():
                await channel.close()
            log.info("notifier stopped", delivered=self.stats.delivered, dead_letters=self.stats.dead_letters,
                     retries=self.stats.retries, skipped=self.stats.skipped, notifications=self.stats.notifications,
                     batches=self.stats.batches)

    async def _catch_up(self, followers: Sequence[TopicFollower], tasks: Sequence[asyncio.Task[None]]) -> None:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while not all(f.caught_up.is_set() for f in followers):
            for t in tasks:
                if t.done():
                    exc = t.exception()
                    raise StartupError(f"cannot read {t.get_name()[7:]}: {exc}") from exc
            if time.monotonic() > deadline:
                raise StartupError(f"could not read {CONTROL_TOPIC} and {DELIVERIES_TOPIC} within "
                                   f"{CATCH_UP_TIMEOUT_S:.0f} s")
            await asyncio.sleep(0.02)

    def plan(self, polled: Mapping[TopicPartition, Sequence[Any]]) -> list[Job]:
        """The deliveries of a batch, in offset order; finished keys are skipped."""
        jobs: list[Job] = []
        subs = list(self.subscriptions.values())
        for tp, records in polled.items():
            read = read_incident_event if tp.topic == INCIDENTS_TOPIC else read_alert_event
            for r in records:
                try:
                    event = cast(AlertEvent, read(r.value))
                    targets = recipients(subs, event, self.catalog)
                    keys = [event_key(event, sub) for sub in targets]
                except (ValueError, KeyError, TypeError) as exc:  # MessageError is a ValueError
                    self.stats.malformed += 1
                    log.warning("unreadable event skipped", topic=tp.topic, partition=tp.partition, offset=r.offset,
                                error=str(exc)[:200])
                    continue
                for key, sub in zip(keys, targets, strict=True):
                    if key in self.finished:
                        self.stats.skipped += 1
                    else:
                        jobs.append(Job(key, event, sub, tp, r.offset))
        return jobs

    async def _step(self, consumer: AIOKafkaConsumer, polled: Mapping[TopicPartition, Sequence[Any]],
                    stop: asyncio.Event) -> None:
        """Jobs of what was read join their groups; the groups that are due are notified; then the offsets
        that no waiting job holds are committed."""
        now = int(time.time() * 1000)
        for job in self.plan(polled):
            if not self.dispatcher.add(job, group_labels(job.sub, job.event, self.catalog), now):
                await self._record(job, attempt=self.attempted.get(job.key, 0) + 1, status=SKIPPED, http_status=0,
                                   error="repeat_interval_s: notified less long ago", at_ms=now, duration_ms=0.0,
                                   delivery_id=None)
                self._finish(job.key)
                self.stats.repeats_skipped += 1
        for tp, records in polled.items():
            if records:
                self.read_through[tp] = records[-1].offset
        due = self.dispatcher.due(now)
        if due:
            per_sub: dict[str, list[Notification]] = {}
            for n in due:
                per_sub.setdefault(n.sub.id, []).append(n)
            await asyncio.gather(*(self._notify_in_order(ns, stop) for ns in per_sub.values()))
        if polled or due:
            await self._commit(consumer)
            self.stats.batches += 1

    async def _notify_in_order(self, notes: Sequence[Notification], stop: asyncio.Event) -> None:
        """One subscription's notifications, one after the other; a stop puts the rest back in their groups."""
        for n in notes:
            finished = not stop.is_set() and await self._deliver(n, stop)
            self.dispatcher.done(n, int(time.time() * 1000), finished=finished)

    async def _deliver(self, n: Notification, stop: asyncio.Event) -> bool:
        """Attempts until delivered or dead-lettered (True), or until a stop interrupts a retry wait (False)."""
        s = self.settings
        channel = self.channels[n.sub.channel]
        attempt = max(self.attempted.get(j.key, 0) for j in n.jobs)
        while True:
            attempt += 1
            async with self._slots:  # in flight from here until its records are acknowledged
                at_ms = int(time.time() * 1000)
                started = time.perf_counter()
                outcome = await channel.send(n)
                duration_ms = (time.perf_counter() - started) * 1000
                status = status_after(outcome, attempt, s.notify_max_attempts)
                metrics.delivery_attempt(n.sub.channel, status, outcome.ok, duration_ms / 1000)
                delivery_id = uuid.uuid4().hex
                for job in n.jobs:
                    await self._record(job, attempt=attempt, status=status, http_status=outcome.status_code,
                                       error=outcome.error, at_ms=at_ms, duration_ms=duration_ms,
                                       delivery_id=delivery_id)
            if status in FINAL_STATUSES:
                for job in n.jobs:
                    self._finish(job.key)
                self.stats.notifications += 1
                if outcome.ok:
                    self.stats.delivered += len(n.jobs)
                else:
                    self.stats.dead_letters += len(n.jobs)
                    log.warning("notification dead-lettered", idempotency_key=n.key, subscription_id=n.sub.id,
                                target=redact_target(n.sub.target), attempts=attempt, events=len(n.jobs),
                                error=outcome.error)
                return True
            self.stats.retries += 1
            for job in n.jobs:
                self.attempted[job.key] = attempt
            wait_s = backoff_s(attempt, s.notify_backoff_s, s.notify_backoff_max_s)
            log.info("notification will be retried", idempotency_key=n.key, subscription_id=n.sub.id,
                     attempt=attempt, error=outcome.error, retry_in_s=wait_s)
            try:
                await asyncio.wait_for(stop.wait(), wait_s)
                return False  # stopping: the receiver did not take it; the next start tries again
            except TimeoutError:
                pass

    async def _record(self, job: Job, *, attempt: int, status: str, http_status: int, error: str, at_ms: int,
                      duration_ms: float, delivery_id: str | None) -> None:
        event = job.event
        if is_incident(event):  # alert_deliveries: the incident id and `incident.<event>` (its key says the rest)
            event = cast(AlertEvent, {"alert_id": job.subject, "seq": event["seq"],
                                      "event": f"incident.{event['event']}"})
        await self._publish(delivery_message(
            key=job.key, event=event, subscription_id=job.sub.id, channel=job.sub.channel,
            target=redact_target(job.sub.target), attempt=attempt, status=status, http_status=http_status,
            error=error, attempted_ms=at_ms, duration_ms=duration_ms, delivery_id=delivery_id))

    async def _publish(self, record: DeliveryRecord) -> None:
        if self._producer is None:
            raise RuntimeError("the notifier's producer is not started: run() starts it")
        payload, key = orjson.dumps(record), record["idempotency_key"].encode()
        for tries in range(1, PUBLISH_TRIES + 1):
            try:
                await self._producer.send_and_wait(DELIVERIES_TOPIC, payload, key=key)
                return
            except KafkaError as exc:
                if tries == PUBLISH_TRIES:
                    raise DeliveryRecordError(f"cannot record deliveries on {DELIVERIES_TOPIC}: {exc!r}") from exc
                log.warning("delivery record not acknowledged, retrying", error=repr(exc), attempt=tries)
                await asyncio.sleep(min(0.25 * tries, 2.0))

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit, per owned partition, up to the first event with a job not finished (or all that was read).
        Jobs waiting from partitions no longer owned are dropped: their next owner reads them again."""
        assigned = consumer.assignment()
        if self.dispatcher.drop_partitions(tp for tp in self.read_through if tp not in assigned):
            log.info("waiting notifications of revoked partitions dropped (their next owner sends them)")
        for tp in [tp for tp in self.read_through if tp not in assigned]:
            del self.read_through[tp]
        holding = self.dispatcher.holding()
        mine = {tp: holding.get(tp, read + 1) for tp, read in self.read_through.items()}
        if not mine:
            return
        try:
            await consumer.commit(mine)
        except KafkaError as exc:  # a rebalance took the partitions: their next owner skips finished keys
            log.warning("commit failed after the deliveries", error=repr(exc))
