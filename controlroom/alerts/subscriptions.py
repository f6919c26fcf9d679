"""Subscriptions: who hears of which alert events, and how. Pure code (validation, routing), no I/O.

A subscription document (API body, `subscription.put` on alerts.control, `subscriptions.doc` in ClickHouse):
    {"id": "ops-hanoi", "name": "Hà Nội duty desk", "channel": "webhook",
     "target": "https://hooks.example.vn/controlroom", "format": "json",
     "filters": {"categories": [], "feeds": ["water_level"], "provinces": ["01"], "min_severity": "warning"},
     "tier": "primary", "enabled": true}
`channel` "webhook" takes `format` ("json" | "alertmanager"); "email" takes `language` ("vi" | "en") and an
address as `target`. Empty filter lists match everything. `id` is optional on input (see new_subscription_id).

Grouping, as Alertmanager users know it: `group_by` (labels among GROUP_LABELS; [] puts every alert of the
subscription in one group, ["..."] gives each alert its own group), `group_wait_s` (how long a new group
gathers before its first notification), `group_interval_s` (how long a group waits before notifying what
changed since its last notification) and `repeat_interval_s` (null: the rules' own reminders pass; a number:
a `repeat` event is not sent when its alert was notified to this subscription less than that long ago).
Defaults (GROUPING_DEFAULT): by rule and feed, 5 s, 60 s, null — a silent feed is one notification per
subscriber, a first alarm leaves within seconds.

What it hears of: `kinds`, ["alert"] (default), ["incident"] or both. Incident events (topic `incidents`)
notify `opened`, `acknowledged` and `resolved` (INCIDENT_EVENTS: the lifecycle; an alert joining or leaving is
an alert event already, assignments and comments are the team's own conversation, in the API's timeline); the
filters apply to an incident as to its alerts: its severity, its province, and the feeds / categories of any
of its member alerts. Each incident is a group of its own (it already groups alerts), with the
subscription's group_wait_s and group_interval_s. Escalation is for alerts: an escalation subscription hears
of no incident.

Every error is a SubscriptionError whose message starts with the field path (``filters.feeds[0]: …``), so the
API can answer 422 with it verbatim.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from controlroom.catalog import NATIONAL, Catalog
from controlroom.errors import ControlRoomError
from controlroom.schema import SEVERITIES

CHANNELS = ("webhook", "email")
FORMATS = ("json", "alertmanager")
LANGUAGES = ("vi", "en")
TIERS = ("primary", "escalation")
# which alert events each tier hears of; `pending`, silenced and inhibited events never notify anyone
TIER_EVENTS = {"primary": frozenset({"firing", "repeat", "resolved", "acknowledged"}),
               "escalation": frozenset({"escalated"})}
KINDS = ("alert", "incident")
INCIDENT_EVENTS = frozenset({"opened", "acknowledged", "resolved"})  # the incident events that notify
FIELDS = ("id", "name", "channel", "target", "format", "language", "filters", "tier", "enabled", "group_by",
          "group_wait_s", "group_interval_s", "repeat_interval_s", "kinds")
GROUP_LABELS = ("rule", "feed", "category", "province", "severity", "agency")
EACH_ALERT = "..."  # group_by ["..."]: every alert its own group (Alertmanager's spelling)
FILTER_FIELDS = ("categories", "feeds", "provinces", "min_severity")
ID_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
# deliberately plain: one @, no spaces, a dotted domain (or localhost); SMTP has the last word
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$")
MAX_NAME = 200
MAX_TARGET = 2048
MAX_FILTER_ITEMS = 100


class SubscriptionError(ControlRoomError):
    """A subscription document is invalid; the message starts with the field path."""


@dataclass(frozen=True, slots=True)
class Filters:
    categories: tuple[str, ...] = ()
    feeds: tuple[str, ...] = ()
    provinces: tuple[str, ...] = ()
    min_severity: str = "info"


@dataclass(frozen=True, slots=True)
class Grouping:
    by: tuple[str, ...] = ("rule", "feed")
    wait_s: float = 5.0
    interval_s: float = 60.0
    repeat_s: float | None = None


GROUPING_DEFAULT = Grouping()


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    name: str
    channel: str  # webhook | email
    target: str  # URL or e-mail address
    format: str = "json"  # webhook body: json | alertmanager
    language: str = "vi"  # e-mail: vi | en
    filters: Filters = field(default_factory=Filters)
    tier: str = "primary"
    enabled: bool = True
    grouping: Grouping = GROUPING_DEFAULT
    kinds: tuple[str, ...] = ("alert",)


def is_incident(event: Mapping[str, Any]) -> bool:
    """An incident event (topic `incidents`) rather than an alert event: it names its incident."""
    return "incident_id" in event


def subject_of(event: Mapping[str, Any]) -> str:
    """What an event is about: its incident, or its alert (an incident event's `alert_id` is a member's)."""
    return str(event["incident_id"] if is_incident(event) else event["alert_id"])


def new_subscription_id() -> str:
    """An id for a subscription created without one: ``sub-`` and 12 random hex digits."""
    return f"sub-{secrets.token_hex(6)}"


def _text(v: Any, where: str, max_len: int) -> str:
    if not isinstance(v, str) or not v.strip():
        raise SubscriptionError(f"{where}: must be a non-empty string")
    if len(v) > max_len:
        raise SubscriptionError(f"{where}: at most {max_len} characters")
    return v.strip()


def _choice(v: Any, where: str, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise SubscriptionError(f"{where}: must be one of {', '.join(choices)}")
    return str(v)


def _list(v: Any, where: str, known: Iterable[str], what: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise SubscriptionError(f"{where}: must be a list")
    if len(v) > MAX_FILTER_ITEMS:
        raise SubscriptionError(f"{where}: at most {MAX_FILTER_ITEMS} items")
    allowed = set(known)
    out: list[str] = []
    for i, item in enumerate(v):
        if not isinstance(item, str) or item not in allowed:
            shown = item[:64] if isinstance(item, str) else item
            raise SubscriptionError(f"{where}[{i}]: unknown {what} {shown!r}")
        if item not in out:
            out.append(item)
    return tuple(out)


def _no_unknown(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for k in raw:
        if k not in allowed:
            raise SubscriptionError(f"{where}{k}: unknown field (allowed: {', '.join(allowed)})")


def _filters(v: Any, catalog: Catalog) -> Filters:
    if v is None:
        return Filters()
    if not isinstance(v, dict):
        raise SubscriptionError("filters: must be an object")
    _no_unknown(v, FILTER_FIELDS, "filters.")
    return Filters(
        categories=_list(v.get("categories"), "filters.categories", catalog.categories, "category"),
        feeds=_list(v.get("feeds"), "filters.feeds", catalog.feeds, "feed"),
        provinces=_list(v.get("provinces"), "filters.provinces", [*catalog.provinces, NATIONAL], "province"),
        min_severity=_choice(v.get("min_severity", "info"), "filters.min_severity", SEVERITIES),
    )


def _kinds(v: Any) -> tuple[str, ...]:
    if v is None:
        return ("alert",)
    if not isinstance(v, list) or not v:
        raise SubscriptionError(f"kinds: must be a non-empty list among {', '.join(KINDS)}")
    out = _list(v, "kinds", KINDS, "kind")
    return tuple(k for k in KINDS if k in out)


def _seconds(v: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise SubscriptionError(f"{where}: must be a number of seconds from {lo:g} to {hi:g}")
    return float(v)


def _grouping(doc: Mapping[str, Any]) -> Grouping:
    d = GROUPING_DEFAULT
    by = doc.get("group_by", list(d.by))
    if not isinstance(by, list) or not all(isinstance(x, str) for x in by):
        raise SubscriptionError("group_by: must be a list of labels")
    if by != [EACH_ALERT]:
        for i, label in enumerate(by):
            if label not in GROUP_LABELS:
                raise SubscriptionError(f"group_by[{i}]: unknown label {label[:64]!r} (labels: "
                                        f"{', '.join(GROUP_LABELS)}; or [\"{EACH_ALERT}\"] for one group per alert)")
    repeat = doc.get("repeat_interval_s", d.repeat_s)
    return Grouping(by=tuple(dict.fromkeys(by)),
                    wait_s=_seconds(doc.get("group_wait_s", d.wait_s), "group_wait_s", 0, 3600),
                    interval_s=_seconds(doc.get("group_interval_s", d.interval_s), "group_interval_s", 1, 86_400),
                    repeat_s=None if repeat is None else _seconds(repeat, "repeat_interval_s", 60, 7 * 86_400))


def _webhook_url(v: Any) -> str:
    url = _text(v, "target", MAX_TARGET)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise SubscriptionError(f"target: not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise SubscriptionError("target: must be an http:// or https:// URL with a host")
    return url


def _email_address(v: Any) -> str:
    address = _text(v, "target", 254)
    if not EMAIL_RE.match(address):
        raise SubscriptionError("target: must be an e-mail address such as duty@example.gov.vn")
    return address


def parse_subscription(doc: Any, catalog: Catalog) -> Subscription:
    """Validate a subscription document against the catalog. An absent id gets a new one."""
    if not isinstance(doc, dict):
        raise SubscriptionError("subscription: must be a JSON object")
    _no_unknown(doc, FIELDS, "")
    sid = doc.get("id")
    if sid is None:
        sid = new_subscription_id()
    elif not isinstance(sid, str) or not ID_RE.match(sid):
        raise SubscriptionError("id: 1 to 64 characters among a-z, 0-9, '_' and '-'")
    name = _text(doc.get("name"), "name", MAX_NAME)
    channel = _choice(doc.get("channel"), "channel", CHANNELS)
    if channel == "webhook":
        target = _webhook_url(doc.get("target"))
        fmt = _choice(doc.get("format", "json"), "format", FORMATS)
        if "language" in doc:
            raise SubscriptionError("language: only for channel email")
        language = "vi"
    else:
        target = _email_address(doc.get("target"))
        language = _choice(doc.get("language", "vi"), "language", LANGUAGES)
        if "format" in doc:
            raise SubscriptionError("format: only for channel webhook")
        fmt = "json"
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        raise SubscriptionError("enabled: must be true or false")
    return Subscription(id=sid, name=name, channel=channel, target=target, format=fmt, language=language,
                        filters=_filters(doc.get("filters"), catalog),
                        tier=_choice(doc.get("tier", "primary"), "tier", TIERS), enabled=enabled,
                        grouping=_grouping(doc), kinds=_kinds(doc.get("kinds")))


def subscription_to_doc(sub: Subscription) -> dict[str, Any]:
    """The canonical document; parse_subscription(subscription_to_doc(s)) == s."""
    doc: dict[str, Any] = {"id": sub.id, "name": sub.name, "channel": sub.channel, "target": sub.target}
    if sub.channel == "webhook":
        doc["format"] = sub.format
    else:
        doc["language"] = sub.language
    f = sub.filters
    doc["filters"] = {"categories": list(f.categories), "feeds": list(f.feeds), "provinces": list(f.provinces),
                      "min_severity": f.min_severity}
    doc["tier"] = sub.tier
    doc["enabled"] = sub.enabled
    g = sub.grouping
    doc.update(group_by=list(g.by), group_wait_s=g.wait_s, group_interval_s=g.interval_s,
               repeat_interval_s=g.repeat_s, kinds=list(sub.kinds))
    return doc


# --- routing ---------------------------------------------------------------------------------------

def matches(sub: Subscription, event: Mapping[str, Any], catalog: Catalog) -> bool:
    """Does this alert event notify this subscription? Never `pending`, never a silenced or inhibited event
    (`inhibited_by` set: another firing alert explains it, controlroom/alerts/inhibit.py); the tier
    picks the event kinds (primary: firing, repeat, resolved, acknowledged; escalation: escalated); then
    severity >= min_severity and the feed / category / province lists (empty = all). An incident event:
    see matches_incident."""
    if is_incident(event):
        return matches_incident(sub, event, catalog)
    if "alert" not in sub.kinds:
        return False
    if not sub.enabled or event.get("silenced") is True or event.get("inhibited_by"):
        return False
    if event.get("event") not in TIER_EVENTS[sub.tier]:
        return False
    severity = event.get("severity")
    if severity not in SEVERITIES or SEVERITIES.index(severity) < SEVERITIES.index(sub.filters.min_severity):
        return False
    f, feed_id = sub.filters, event.get("feed")
    if f.feeds and feed_id not in f.feeds:
        return False
    if f.categories:
        feed = catalog.feeds.get(feed_id) if isinstance(feed_id, str) else None
        if feed is None or feed.category not in f.categories:
            return False
    return not f.provinces or event.get("province") in f.provinces


def matches_incident(sub: Subscription, event: Mapping[str, Any], catalog: Catalog) -> bool:
    """Does this incident event notify this subscription? Only a primary subscription with kind "incident", only
    INCIDENT_EVENTS; severity >= min_severity, the incident's province in `provinces`, and one of its member
    alerts on one of `feeds` / `categories` (empty = all)."""
    if not sub.enabled or "incident" not in sub.kinds or sub.tier != "primary":
        return False
    if event.get("event") not in INCIDENT_EVENTS:
        return False
    severity = event.get("severity")
    if severity not in SEVERITIES or SEVERITIES.index(severity) < SEVERITIES.index(sub.filters.min_severity):
        return False
    f = sub.filters
    feeds = {str(m.get("feed")) for m in event.get("members") or [] if isinstance(m, Mapping)}
    if f.feeds and not feeds & set(f.feeds):
        return False
    if f.categories and not {c.category for fid in feeds if (c := catalog.feeds.get(fid))} & set(f.categories):
        return False
    return not f.provinces or event.get("province") in f.provinces


def recipients(subs: Iterable[Subscription], event: Mapping[str, Any], catalog: Catalog) -> list[Subscription]:
    """The subscriptions an event goes to, in id order (so deliveries are planned deterministically)."""
    return sorted((s for s in subs if matches(s, event, catalog)), key=lambda s: s.id)


def group_labels(sub: Subscription, event: Mapping[str, Any], catalog: Catalog) -> dict[str, str]:
    """The values of the subscription's group_by labels for this event (the group it joins). An incident is
    a group of its own."""
    if is_incident(event):
        return {"incident_id": str(event["incident_id"])}
    if sub.grouping.by == (EACH_ALERT,):
        return {"alert_id": str(event.get("alert_id"))}
    feed = catalog.feeds.get(str(event.get("feed")))
    values = {"rule": str(event.get("rule_id")), "feed": str(event.get("feed")),
              "category": feed.category if feed else "", "province": str(event.get("province")),
              "severity": str(event.get("severity")), "agency": catalog.registry.supplier_of_alert(event)}
    return {label: values[label] for label in sub.grouping.by}
