"""Alert lifecycle: conditions in, alert events out. Pure code, no Faust, Kafka or ClickHouse.

Per fingerprint (rule, feed, province, dims) there is one alert:
    (none) --active--> pending --held for_s--> firing --inactive--> resolved --active--> pending …
with for_s = 0 going straight to firing. A pending alert whose condition stops holding resolves too
(a "resolved" event, so the current-state table never keeps a stale pending row).

Events (controlroom.schema.alert_message, plus two keys, ``silenced`` and ``inhibited_by``):
- pending, firing, resolved: state changes;
- firing again while firing: the severity rose (e.g. water level from alarm II to III); the alert keeps
  the highest severity of its episode, so a level falling back does not flap;
- acknowledged: who and a comment; stops repeats and escalation until the alert resolves;
- repeat: a firing, unacknowledged alert not notified for repeat_interval_s;
- escalated: critical and unacknowledged for escalate_after_s since it became critical; once per episode;
- inhibited / uninhibited: a pending or firing alert became inhibited, or stopped being so, with no other
  event to say it (never notified).
``seq`` grows by one per event of a fingerprint, across episodes, so (alert_id, seq) never repeats.

Silences: a silenced alert still changes state and its state-change events are emitted, marked
``silenced: true`` (history and current state stay true; the notifier must not notify them). Pure
notifications (repeat, escalated) are not emitted while silenced; their clocks keep running. When the
silence ends (time or remove_silence), the next tick notifies what is due: a firing alert never notified
outside a silence gets a "repeat" at once, an overdue escalation fires. A firing event held back by a silence
(or an inhibition) counts as not notified, so a severity rise inside a silence is notified when it ends.

Inhibition (controlroom/alerts/inhibit.py, when the book has an Inhibitor): the same, with the mute computed
from the firing alerts instead of a time range. Events of an inhibited alert carry ``inhibited_by`` (the
source's alert id; None otherwise) and are not notified; repeats and escalations wait. A pending or firing
alert that becomes inhibited without an event of its own gets an ``inhibited`` event (so the current state
says why it is quiet). When the inhibition ends, a firing alert that is neither acknowledged nor silenced is
notified at once (a ``repeat``); any other gets an ``uninhibited`` event. A ``resolved`` event of an episode
never notified keeps the inhibition it had, so a receiver never hears of the end of what it never heard of.

Clocks: `apply` uses the condition's time, `tick` the caller's; every decision is a function of the
inputs and the state, so a book restored from `snapshot()` emits exactly what the original would.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from controlroom.alerts.evaluate import Condition
from controlroom.alerts.inhibit import Inhibitor
from controlroom.alerts.silences import Silence, matcher_field_error
from controlroom.errors import ControlRoomError
from controlroom.schema import SEVERITIES, AlertEvent, alert_id_of, alert_message

SNAPSHOT_VERSION = 1


class LifecycleError(ControlRoomError):
    """An alert or silence request that cannot be honoured (unknown fingerprint, bad matcher…)."""


@dataclass(slots=True)
class AlertState:
    fingerprint: str
    rule_id: str
    rule_version: int
    rule_type: str
    feed: str
    province: str
    dims: dict[str, str]
    severity: str
    state: str  # pending | firing | resolved
    seq: int = 0
    starts_at_ms: int = 0  # when the condition began to hold (start of pending)
    fired_at_ms: int | None = None
    ends_at_ms: int | None = None
    critical_since_ms: int | None = None
    value: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    summary_vi: str = ""
    summary_en: str = ""
    active: bool = False  # the latest condition seen
    for_s: float = 0.0
    repeat_interval_s: float | None = None
    escalate_after_s: float | None = None
    ack: dict[str, Any] | None = None
    escalated: bool = False
    notified_at_ms: int | None = None  # last unsilenced firing/repeat/escalated event of this episode
    link: str = ""
    inhibited_by: str | None = None  # alert id of the firing alert that mutes this one (as of its last event)


def _sev_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


class AlertBook:
    def __init__(self, inhibitor: Inhibitor | None = None) -> None:
        self.alerts: dict[str, AlertState] = {}
        self.silences: dict[str, Silence] = {}
        self.inhibitor = inhibitor

    # --- queries ----------------------------------------------------------------------------------

    def get(self, fp: str) -> AlertState | None:
        return self.alerts.get(fp)

    def current(self) -> list[AlertState]:
        """Alerts pending or firing."""
        return [a for a in self.alerts.values() if a.state != "resolved"]

    def is_silenced(self, a: AlertState, now_ms: int) -> bool:
        return any(s.covers(a, now_ms) for s in self.silences.values())

    def inhibition_of(self, a: AlertState) -> str | None:
        """The alert id of the firing alert that inhibits `a` now, or None."""
        if self.inhibitor is None:
            return None
        found = self.inhibitor.inhibitor_of(a, self.alerts)
        return None if found is None else alert_id_of(found[1])

    # --- inputs -----------------------------------------------------------------------------------

    def apply(self, c: Condition) -> list[AlertEvent]:
        a = self.alerts.get(c.fingerprint)
        at = c.at_ms
        if not c.active:
            if a is None or a.state == "resolved":
                return []
            self._update(a, c)
            a.state, a.ends_at_ms = "resolved", at
            events = [self._event(a, "resolved", at)]
            a.ack, a.escalated, a.notified_at_ms, a.critical_since_ms = None, False, None, None
            return events
        if a is None:
            a = AlertState(fingerprint=c.fingerprint, rule_id=c.rule.id, rule_version=c.rule.version,
                           rule_type=c.rule.type, feed=c.feed, province=c.province, dims=dict(c.dims),
                           severity=c.severity, state="resolved")
            self.alerts[c.fingerprint] = a
        if a.state == "resolved":  # a new episode
            self._update(a, c)
            a.severity = c.severity
            a.starts_at_ms, a.fired_at_ms, a.ends_at_ms = at, None, None
            if a.for_s > 0:
                a.state = "pending"
                return [self._event(a, "pending", at)]
            return self._fire(a, at)
        previous = a.severity
        self._update(a, c)
        if a.state == "pending":
            a.severity = c.severity  # not notified yet: it simply follows the condition
            if at - a.starts_at_ms >= a.for_s * 1000:
                return self._fire(a, at)
            return []
        if _sev_rank(c.severity) > _sev_rank(previous):  # firing and worse than before: say so
            a.severity = c.severity
            a.evidence = {**a.evidence, "previous_severity": previous}
            if c.severity == "critical":
                a.critical_since_ms = at
            return [self._notify(a, "firing", at)]
        return []

    def tick(self, now_ms: int) -> list[AlertEvent]:
        """Time-driven transitions: pending → firing, repeats, escalations; expired silences are dropped."""
        out: list[AlertEvent] = []
        for sid in [sid for sid, s in self.silences.items() if s.ends_ms <= now_ms]:
            del self.silences[sid]
        out.extend(self.refresh_inhibitions(now_ms, every=True))
        for a in self.alerts.values():
            if a.state == "pending" and a.active and now_ms - a.starts_at_ms >= a.for_s * 1000:
                out.extend(self._fire(a, now_ms))
                continue
            if a.state != "firing" or a.ack is not None or a.inhibited_by or self.is_silenced(a, now_ms):
                continue
            # never notified: it fired (or rose) inside a silence that is now over
            repeat_due = a.notified_at_ms is None or (a.repeat_interval_s is not None
                                                      and now_ms - a.notified_at_ms >= a.repeat_interval_s * 1000)
            escalation_due = (a.severity == "critical" and a.escalate_after_s is not None and not a.escalated
                              and a.critical_since_ms is not None
                              and now_ms - a.critical_since_ms >= a.escalate_after_s * 1000)
            if repeat_due:  # the first list hears again (or at last, after a silence)
                out.append(self._notify(a, "repeat", now_ms))
            if escalation_due:  # a different audience (the second list), so both may go out together
                a.escalated = True
                out.append(self._notify(a, "escalated", now_ms))
        return out

    def refresh_inhibitions(self, now_ms: int, *, every: bool = False) -> list[AlertEvent]:
        """Events for alerts whose inhibition began or ended without an event of their own (see the module
        doc). Looks only when the firing sources changed, unless `every` (the clock: labels may have moved)."""
        inh = self.inhibitor
        if inh is None or not (every or inh.changed):
            return []
        inh.changed = False
        out: list[AlertEvent] = []
        for a in self.alerts.values():
            if a.state == "resolved":
                continue
            now = self.inhibition_of(a)
            if now == a.inhibited_by:
                continue
            if now is not None:
                out.append(self._event(a, "inhibited", now_ms))
            elif a.state == "firing" and a.ack is None and not self.is_silenced(a, now_ms):
                out.append(self._notify(a, "repeat", now_ms))  # the source resolved: what it muted is heard now
            else:
                out.append(self._event(a, "uninhibited", now_ms))
        return out

    def acknowledge(self, fp: str, by: str, comment: str, now_ms: int) -> list[AlertEvent]:
        """Acknowledge a pending or firing alert: stops repeats and escalation for this episode.
        Acknowledging again, or an alert that is resolved, changes nothing (no event)."""
        a = self.alerts.get(fp)
        if a is None:
            raise LifecycleError(f"fingerprint: no alert {fp!r}")
        if a.state == "resolved" or a.ack is not None:
            return []
        a.ack = {"by": by, "comment": comment, "at": now_ms}
        return [self._event(a, "acknowledged", now_ms)]

    def resolve_retired(self, rule_ids: Iterable[str], now_ms: int) -> list[AlertEvent]:
        """Resolve open alerts whose rule is not among `rule_ids` (deleted or disabled, perhaps while the
        worker was down: nothing else would ever end them)."""
        keep = set(rule_ids)
        out: list[AlertEvent] = []
        for a in self.alerts.values():
            if a.state != "resolved" and a.rule_id not in keep:
                a.state, a.ends_at_ms, a.active = "resolved", now_ms, False
                a.evidence = {**a.evidence, "resolved_by": {"reason": "rule removed"}}
                out.append(self._event(a, "resolved", now_ms))
                a.ack, a.escalated, a.notified_at_ms, a.critical_since_ms = None, False, None, None
        return out

    def add_silence(self, matchers: dict[str, str], starts_ms: int, ends_ms: int, id: str) -> Silence:
        if not matchers:
            raise LifecycleError("matchers: at least one matcher is required (a silence of everything is a mistake)")
        for name, value in matchers.items():
            if (error := matcher_field_error(name)) is not None:
                raise LifecycleError(f"matchers.{name}: {error}")
            if not isinstance(value, str):
                raise LifecycleError(f"matchers.{name}: must be a string")
        if ends_ms <= starts_ms:
            raise LifecycleError("ends_ms: must be after starts_ms")
        s = Silence(id, dict(matchers), starts_ms, ends_ms)
        self.silences[id] = s
        return s

    def remove_silence(self, id: str) -> bool:
        """End a silence now; what it held back is notified by the next tick. False when unknown."""
        return self.silences.pop(id, None) is not None

    # --- internals --------------------------------------------------------------------------------

    @staticmethod
    def _update(a: AlertState, c: Condition) -> None:
        r = c.rule
        a.rule_version, a.for_s = r.version, r.for_s
        a.repeat_interval_s, a.escalate_after_s = r.repeat_interval_s, r.escalate_after_s
        a.active = c.active
        if c.active or c.value is not None:
            a.value = c.value
        if c.active:  # keep the evidence of the alert itself; a resolve adds why it ended
            a.evidence, a.summary_vi, a.summary_en = c.evidence, c.summary_vi, c.summary_en
        else:
            a.evidence = {**a.evidence, "resolved_by": c.evidence}

    def _fire(self, a: AlertState, at: int) -> list[AlertEvent]:
        a.state, a.fired_at_ms = "firing", at
        a.critical_since_ms = at if a.severity == "critical" else None
        return [self._notify(a, "firing", at)]

    def _notify(self, a: AlertState, event: str, at: int) -> AlertEvent:
        msg = self._event(a, event, at)
        if not msg["silenced"] and not msg["inhibited_by"]:
            a.notified_at_ms = at
        elif event == "firing":
            a.notified_at_ms = None  # held back: notified when the silence or inhibition ends
        return msg

    def _event(self, a: AlertState, event: str, at: int) -> AlertEvent:
        a.seq += 1
        msg = alert_message(
            fingerprint_=a.fingerprint, rule_id=a.rule_id, rule_version=a.rule_version, rule_type=a.rule_type,
            severity=a.severity, event=event, state=a.state, seq=a.seq, feed=a.feed, province=a.province,
            dims=a.dims, summary_vi=a.summary_vi, summary_en=a.summary_en, value=a.value, evidence=a.evidence,
            starts_at_ms=a.starts_at_ms, ends_at_ms=a.ends_at_ms, event_at_ms=at, ack=a.ack, link=a.link)
        msg["silenced"] = self.is_silenced(a, at)
        if self.inhibitor is not None:
            self.inhibitor.observe(a)
            held = event == "resolved" and a.notified_at_ms is None and a.inhibited_by is not None
            a.inhibited_by = a.inhibited_by if held else self.inhibition_of(a)
        msg["inhibited_by"] = a.inhibited_by
        return msg

    # --- persistence ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return orjson.dumps({"v": SNAPSHOT_VERSION, "alerts": [asdict(a) for a in self.alerts.values()],
                             "silences": [asdict(s) for s in self.silences.values()]})

    def restore(self, data: bytes) -> None:
        doc = orjson.loads(data)
        if doc.get("v") != SNAPSHOT_VERSION:
            raise LifecycleError(f"snapshot: unknown version {doc.get('v')!r}")
        self.alerts = {a["fingerprint"]: AlertState(**a) for a in doc["alerts"]}
        self.silences = {s["id"]: Silence(**s) for s in doc["silences"]}
        if self.inhibitor is not None:
            self.inhibitor.rebuild(self.alerts.values())
            self.inhibitor.changed = False  # the restored alerts already say whether they were inhibited
