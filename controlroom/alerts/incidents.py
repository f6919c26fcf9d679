"""The incident correlator: alert events and commands in, incident events out. Pure code, no Kafka.

It runs inside the alerter (streams/incidents.py) on the alert events the alerter publishes. Per incident
type and scope key (the province, or "00" for a national type) it keeps the firing alerts of the type's
signals. When an alert starts firing and at least `min_signals` distinct signals are firing there, their
firing begun within `window_s` of the new one's, and one of them is an anchor of the type when it names
anchors (a flood needs the water level or flood rescues; calls and reports alone are not a flood), an
incident opens with every firing alert of the type
there; while it is open, an alert of the type that fires there joins it (`alert_joined`), one that resolves
leaves (`alert_resolved`), and when none is firing any more the incident resolves.

Lifecycle: open → acknowledged → resolved (an acknowledged incident still resolves); an assignee and
comments at any time, also after it resolved (within `KEEP_RESOLVED_MS`). Every event carries the whole
state (members, signals, ack, assignee), so incidents_current is its latest event; the events by seq are
the timeline.

Deterministic and idempotent, so a replay after a crash gives the same (incident_id, seq):
- an alert event older than what was seen of that alert ((starts_at, seq) not greater) is ignored;
- a command applied to an incident is remembered by its content hash and not applied twice;
- times come from the inputs (event_at, a command's `at`), never from a clock.
State round-trips through `snapshot()` / `restore()` as plain JSON.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import orjson

from controlroom.alerts.incident_rules import IncidentType
from controlroom.catalog import NATIONAL, Catalog
from controlroom.errors import ControlRoomError
from controlroom.logs import get_logger
from controlroom.schema import (
    AlertEvent,
    AlertNote,
    ControlCommand,
    IncidentEvent,
    IncidentMember,
    alert_note_message,
    incident_id_of,
    incident_message,
)

log = get_logger("incidents")

SNAPSHOT_VERSION = 1
KEEP_RESOLVED_MS = 7 * 86_400_000  # a resolved incident still takes comments and an assignee this long
FORGET_ALERT_MS = 86_400_000  # what was seen of a resolved alert is kept this long (replays are seconds)
MAX_TEXT = 2000


class IncidentError(ControlRoomError):
    """A command the correlator cannot apply (unknown incident…)."""


@dataclass(slots=True)
class Incident:
    incident_id: str
    type_id: str
    type_version: int
    scope: str
    key: str  # province code, or "00"
    severity: str
    title_vi: str
    title_en: str
    opened_at: int
    state: str = "open"  # open | acknowledged | resolved
    seq: int = 0
    resolved_at: int | None = None
    assignee: str = ""
    ack: dict[str, Any] | None = None
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # alert_id -> IncidentMember
    applied: list[str] = field(default_factory=list)  # content hashes of the commands applied

    def firing(self) -> list[dict[str, Any]]:
        return [m for m in self.members.values() if m["state"] == "firing"]


def command_id(cmd: Mapping[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(dict(cmd), option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def alert_note_of(cmd: ControlCommand) -> AlertNote | None:
    """alert.assign / alert.comment → the note the alerter publishes on alerts.notes; None for other kinds."""
    kind = cmd.get("kind")
    if kind not in ("alert.assign", "alert.comment"):
        return None
    return alert_note_message(alert_id=str(cmd["alert_id"]), kind="assigned" if kind == "alert.assign" else "commented",
                              by=str(cmd.get("by") or "?"), at_ms=int(cmd.get("at") or 0),
                              assignee=str(cmd.get("assignee") or "")[:MAX_TEXT],
                              comment=str(cmd.get("comment") or "")[:MAX_TEXT])


class IncidentCorrelator:
    def __init__(self, types: Iterable[IncidentType], catalog: Catalog) -> None:
        self.types = {t.id: t for t in types}
        self.catalog = catalog
        self.firing: dict[str, dict[str, dict[str, Any]]] = {}  # "type|key" -> alert_id -> member
        self.open: dict[str, str] = {}  # "type|key" -> incident_id of the open incident there
        self.incidents: dict[str, Incident] = {}  # open ones, and resolved ones for KEEP_RESOLVED_MS
        self.seen: dict[str, list[int]] = {}  # alert_id -> [starts_at, seq, event_at] of its newest event

    # --- alert events -------------------------------------------------------------------------------

    def on_alerts(self, events: Iterable[AlertEvent]) -> list[IncidentEvent]:
        out: list[IncidentEvent] = []
        for e in events:
            out.extend(self.on_alert(e))
        return out

    def on_alert(self, e: AlertEvent) -> list[IncidentEvent]:
        aid, at = str(e["alert_id"]), int(e["event_at"])
        position = [int(e.get("starts_at") or 0), int(e["seq"])]
        last = self.seen.get(aid)
        if last is not None and position <= last[:2]:
            return []  # replayed: already applied
        matches = [(t, s) for t in self.types.values()
                   if (s := t.signal_of(str(e["rule_id"]), str(e["feed"]), e.get("dims") or {})) is not None]
        if not matches:
            return []
        self.seen[aid] = [*position, at]
        out: list[IncidentEvent] = []
        for itype, signal in matches:
            key = NATIONAL if itype.scope == "national" else str(e["province"])
            gkey = f"{itype.id}|{key}"
            group = self.firing.setdefault(gkey, {})
            if e["state"] == "firing":
                member = group.get(aid)
                if member is not None:
                    member["severity"] = str(e["severity"])  # still firing (repeat, escalated, worse)
                    continue
                group[aid] = self._member(e, signal.id, at)
                out.extend(self._fired(itype, key, gkey, aid, int(e["seq"]), at))
            elif e["state"] == "resolved" and group.pop(aid, None) is not None:
                out.extend(self._resolved(gkey, aid, at))
            if not group:
                self.firing.pop(gkey, None)
        self._forget(at)
        return out

    @staticmethod
    def _member(e: AlertEvent, signal: str, at: int) -> dict[str, Any]:
        m: IncidentMember = {"alert_id": str(e["alert_id"]), "rule_id": str(e["rule_id"]), "feed": str(e["feed"]),
                             "province": str(e["province"]), "dims": dict(e.get("dims") or {}), "signal": signal,
                             "severity": str(e["severity"]), "state": "firing", "fired_at": at, "joined_at": at}
        return dict(m)

    def _fired(self, itype: IncidentType, key: str, gkey: str, aid: str, seq: int, at: int) -> list[IncidentEvent]:
        group = self.firing[gkey]
        new = group[aid]
        incident_id = self.open.get(gkey)
        if incident_id is not None:  # later ones join
            inc = self.incidents[incident_id]
            inc.members[aid] = {**new, "joined_at": at}
            return [self._event(inc, "alert_joined", at, alert_id=aid, signal=new["signal"])]
        window_ms = itype.window_s * 1000
        near = {m["signal"] for m in group.values() if abs(m["fired_at"] - new["fired_at"]) <= window_ms}
        if len(near) < itype.min_signals or (itype.anchors and not near & itype.anchors):
            return []  # too few signals, or only the generic ones (calls and reports alone are not a flood)
        iid = incident_id_of(itype.id, key, aid, seq)
        prov = self.catalog.provinces.get(key)
        names = {"province": key, "province_vi": prov.name_vi if prov else "toàn quốc",
                 "province_en": prov.name_en if prov else "nationwide"}
        inc = Incident(iid, itype.id, itype.version, itype.scope, key, itype.severity,
                       itype.title_vi.format(**names), itype.title_en.format(**names), opened_at=at)
        self.incidents[iid] = inc
        self.open[gkey] = iid
        # every firing alert of the type there is part of it: the ones that made it, and older ones. The alert
        # that opened it is named by `opened` (its member entry is in that event already), the others join.
        for m in sorted(group.values(), key=lambda m: (m["fired_at"], m["alert_id"])):
            inc.members[m["alert_id"]] = {**m, "joined_at": at}
        out = [self._event(inc, "opened", at, alert_id=aid, signal=new["signal"])]
        out += [self._event(inc, "alert_joined", at, alert_id=m["alert_id"], signal=m["signal"])
                for m in sorted(group.values(), key=lambda m: (m["fired_at"], m["alert_id"])) if m["alert_id"] != aid]
        return out

    def _resolved(self, gkey: str, aid: str, at: int) -> list[IncidentEvent]:
        incident_id = self.open.get(gkey)
        if incident_id is None:
            return []
        inc = self.incidents[incident_id]
        member = inc.members.get(aid)
        if member is None or member["state"] != "firing":
            return []
        member["state"] = "resolved"
        out = [self._event(inc, "alert_resolved", at, alert_id=aid, signal=member["signal"])]
        if not inc.firing():
            inc.state, inc.resolved_at = "resolved", at
            del self.open[gkey]
            out.append(self._event(inc, "resolved", at))
        return out

    def _forget(self, now: int) -> None:
        """Drop resolved incidents past KEEP_RESOLVED_MS and what was seen of long-resolved alerts."""
        for iid in [i for i, inc in self.incidents.items()
                    if inc.resolved_at is not None and now - inc.resolved_at > KEEP_RESOLVED_MS]:
            del self.incidents[iid]
        firing = {aid for group in self.firing.values() for aid in group}
        for aid in [a for a, s in self.seen.items() if a not in firing and now - s[2] > FORGET_ALERT_MS]:
            del self.seen[aid]

    # --- commands -----------------------------------------------------------------------------------

    def on_control(self, cmd: ControlCommand) -> list[IncidentEvent]:
        """incident.ack / incident.assign / incident.comment. A bad one is logged and skipped, never fatal."""
        kind = cmd.get("kind")
        if kind not in ("incident.ack", "incident.assign", "incident.comment"):
            return []
        try:
            return self._command(str(kind), cmd)
        except (KeyError, TypeError, ValueError, IncidentError) as exc:
            log.warning("incident command skipped", kind=kind, error=f"{type(exc).__name__}: {exc}")
            return []

    def _command(self, kind: str, cmd: ControlCommand) -> list[IncidentEvent]:
        inc = self.incidents.get(str(cmd["incident_id"]))
        if inc is None:
            raise IncidentError(f"incident_id: no incident {cmd['incident_id']!r} (unknown, or resolved long ago)")
        cid = command_id(cmd)
        if cid in inc.applied:
            return []  # replayed
        by, at = str(cmd.get("by") or "?"), int(cmd.get("at") or 0)
        comment = str(cmd.get("comment") or "")[:MAX_TEXT]
        if kind == "incident.ack":
            if inc.state != "open":
                return []  # acknowledged already, or over
            inc.applied.append(cid)
            inc.state, inc.ack = "acknowledged", {"by": by, "comment": comment, "at": at}
            return [self._event(inc, "acknowledged", at, by=by, comment=comment)]
        inc.applied.append(cid)
        if kind == "incident.assign":
            inc.assignee = str(cmd.get("assignee") or "")[:MAX_TEXT]
            return [self._event(inc, "assigned", at, by=by, comment=comment)]
        return [self._event(inc, "commented", at, by=by, comment=comment)]

    # --- events -------------------------------------------------------------------------------------

    def _event(self, inc: Incident, event: str, at: int, *, alert_id: str = "", signal: str = "", by: str = "",
               comment: str = "") -> IncidentEvent:
        inc.seq += 1
        members = [cast(IncidentMember, dict(m))
                   for m in sorted(inc.members.values(), key=lambda m: (m["joined_at"], m["fired_at"], m["alert_id"]))]
        return incident_message(
            incident_id=inc.incident_id, seq=inc.seq, type_id=inc.type_id, type_version=inc.type_version,
            scope=inc.scope, province=inc.key, severity=inc.severity, event=event, state=inc.state,
            title_vi=inc.title_vi, title_en=inc.title_en, members=members, opened_at_ms=inc.opened_at,
            resolved_at_ms=inc.resolved_at, event_at_ms=at, assignee=inc.assignee,
            ack=dict(inc.ack) if inc.ack else None, alert_id=alert_id, signal=signal, by=by, comment=comment)

    # --- persistence --------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return orjson.dumps({"v": SNAPSHOT_VERSION, "firing": self.firing, "open": self.open, "seen": self.seen,
                             "incidents": [asdict(i) for i in self.incidents.values()]})

    def restore(self, data: bytes) -> None:
        doc = orjson.loads(data)
        if doc.get("v") != SNAPSHOT_VERSION:
            raise IncidentError(f"snapshot: unknown version {doc.get('v')!r}")
        self.firing, self.open, self.seen = doc["firing"], doc["open"], doc["seen"]
        self.incidents = {i["incident_id"]: Incident(**i) for i in doc["incidents"]}
