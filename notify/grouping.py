"""Alert events → grouped notifications, the way Alertmanager groups them. Pure code: no clock, no I/O.

Incident events take the same path: an incident is a group of its own (group_labels gives it its incident id),
its `subject` is the incident, its jobs' keys ``incident-<incident_id>:<seq>:<subscription_id>``.

Each subscription sorts the events it hears of into groups by its `group_by` labels
(controlroom.alerts.subscriptions.group_labels). A new group gathers for `group_wait_s`, then one
notification carries every alert of the group (the latest event of each); after that the group notifies
what changed at most once per `group_interval_s`. A change to a group notified longer than `group_interval_s`
ago waits GATHER_MS (or `group_wait_s` when shorter) for the events that came with it: a feed recovering in
34 provinces arrives on several partitions, read in several polls, and stays one notification. A resolved
alert leaves its group once notified; a group with no alert left is forgotten, so the next alert starts a new
one (with its wait).

A notification *delivers* the events that joined since the group's last notification (its jobs: their
idempotency keys ``<alert_id>:<seq>:<subscription_id>`` are what the notifier records as finished) and
*shows* the group's other alerts as they stand. Its own key (the Idempotency-Key header) is derived from its
jobs' keys (and ends with the subscription id), so the same jobs give the same key after a restart.

Offsets: an event's offset may be committed only once its job is finished; `holding()` gives, per
topic-partition, the lowest offset still pending or in flight.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from controlroom.alerts.subscriptions import Subscription, is_incident, subject_of
from controlroom.schema import AlertEvent


@dataclass(frozen=True, slots=True)
class Job:
    """One event (an alert's, or an incident's) for one subscription: delivered at most once per key (see
    notify.service)."""

    key: str
    event: AlertEvent  # or an IncidentEvent (is_incident): only `event`, `seq` and the subject are read here
    sub: Subscription
    tp: Hashable  # the topic-partition it was read from (aiokafka's TopicPartition)
    offset: int

    @property
    def subject(self) -> str:
        return subject_of(self.event)


@dataclass(frozen=True, slots=True)
class Notification:
    sub: Subscription
    group_key: str
    labels: dict[str, str]
    alerts: list[AlertEvent]  # the latest event of every alert (or the incident) of the group, by (province, id)
    jobs: list[Job]  # the events this notification delivers, in the order they were read

    @property
    def key(self) -> str:
        """One job: its own key (<alert_id>:<seq>:<subscription_id>); several: the subscription and a digest
        of their keys."""
        if len(self.jobs) == 1:
            return self.jobs[0].key
        digest = hashlib.sha256("\n".join(sorted(j.key for j in self.jobs)).encode()).hexdigest()[:20]
        return f"g-{digest}:{len(self.jobs)}:{self.sub.id}"

    @property
    def status(self) -> str:
        """Alertmanager's group status: firing while any alert of the group is not resolved."""
        return "firing" if any(a["event"] != "resolved" for a in self.alerts) else "resolved"

    @property
    def delivered_ids(self) -> set[str]:
        return {j.subject for j in self.jobs}

    @property
    def incident(self) -> bool:
        """A notification about an incident (its group holds that incident only)."""
        return bool(self.alerts) and is_incident(self.alerts[0])


@dataclass
class _Group:
    sub: Subscription
    key: str
    labels: dict[str, str]
    due_ms: int
    last_sent_ms: int | None = None
    alerts: dict[str, AlertEvent] = field(default_factory=dict)  # alert id → latest event
    pending: list[Job] = field(default_factory=list)
    notified_ms: dict[str, int] = field(default_factory=dict)  # alert id → when last notified


# how long a change to an idle group waits for the events that came with it (other partitions, the next poll)
GATHER_MS = 1_000


def group_key(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


class Dispatcher:
    def __init__(self) -> None:
        self.groups: dict[tuple[str, str], _Group] = {}
        self.in_flight: dict[str, list[Job]] = {}  # notification key → its jobs, handed out, not finished

    def add(self, job: Job, labels: dict[str, str], now_ms: int) -> bool:
        """Put a job in its group. False: a `repeat` event inside the subscription's repeat_interval_s
        (not sent; the caller records it as skipped)."""
        g_conf = job.sub.grouping
        key = group_key(labels)
        group = self.groups.get((job.sub.id, key))
        if group is None:
            group = _Group(job.sub, key, labels, due_ms=now_ms + round(g_conf.wait_s * 1000))
            self.groups[(job.sub.id, key)] = group
        group.sub = job.sub  # a subscription changed since: its latest version notifies
        alert_id = job.subject
        last = group.notified_ms.get(alert_id)
        if (job.event["event"] == "repeat" and g_conf.repeat_s is not None and last is not None
                and now_ms - last < g_conf.repeat_s * 1000):
            return False
        shown = group.alerts.get(alert_id)
        if shown is None or int(shown["seq"]) <= int(job.event["seq"]):
            group.alerts[alert_id] = job.event
        if group.last_sent_ms is not None and not group.pending:  # the first change since the last notification
            gather = min(GATHER_MS, round(g_conf.wait_s * 1000))
            group.due_ms = max(group.last_sent_ms + round(g_conf.interval_s * 1000), now_ms + gather)
        group.pending.append(job)
        return True

    def due(self, now_ms: int) -> list[Notification]:
        """The notifications to send now (each group's pending jobs move to in flight)."""
        out: list[Notification] = []
        for group in self.groups.values():
            if not group.pending or group.due_ms > now_ms:
                continue
            alerts = sorted(group.alerts.values(), key=lambda a: (a["province"], subject_of(a)))
            n = Notification(group.sub, group.key, dict(group.labels), alerts, group.pending)
            group.pending = []
            self.in_flight[n.key] = n.jobs
            out.append(n)
        return out

    def done(self, n: Notification, now_ms: int, *, finished: bool) -> None:
        """After a notification's attempts: finished (delivered or dead-lettered), or interrupted by a stop
        (its jobs go back to their group, to be sent by the next start)."""
        self.in_flight.pop(n.key, None)
        group = self.groups.get((n.sub.id, n.group_key))
        if group is None:
            return
        if not finished:
            group.pending = n.jobs + group.pending
            return
        group.last_sent_ms = now_ms
        group.due_ms = now_ms + round(group.sub.grouping.interval_s * 1000)
        for alert_id in n.delivered_ids:
            group.notified_ms[alert_id] = now_ms
        for a in n.alerts:  # a resolved alert leaves once it has been notified as resolved
            if a["event"] == "resolved" and group.alerts.get(subject_of(a)) is a:
                del group.alerts[subject_of(a)]
                group.notified_ms.pop(subject_of(a), None)
        if not group.alerts and not group.pending:
            del self.groups[(n.sub.id, n.group_key)]

    def next_due_ms(self) -> int | None:
        dues = [g.due_ms for g in self.groups.values() if g.pending]
        return min(dues) if dues else None

    def holding(self) -> dict[Any, int]:
        """Per topic-partition, the lowest offset of a job not finished yet (pending or in flight)."""
        out: dict[Any, int] = {}
        for jobs in (*(g.pending for g in self.groups.values()), *self.in_flight.values()):
            for j in jobs:
                out[j.tp] = min(out.get(j.tp, j.offset), j.offset)
        return out

    def drop_partitions(self, tps: Iterable[Hashable]) -> int:
        """Forget the pending jobs read from partitions this notifier no longer owns (their next owner reads
        them again: uncommitted). Returns how many were dropped."""
        gone = set(tps)
        dropped = 0
        for group in self.groups.values():
            kept = [j for j in group.pending if j.tp not in gone]
            dropped += len(group.pending) - len(kept)
            group.pending = kept
        return dropped
