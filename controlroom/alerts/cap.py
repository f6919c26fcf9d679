"""OASIS Common Alerting Protocol 1.2 documents and the Atom feed of public alerts. Pure code (stdlib
ElementTree), no Kafka, ClickHouse or HTTP.

Two layers:
- `CapMessage` / `CapInfo` / `CapArea`: the CAP structure, serialised by `cap_xml` in the order the
  OASIS schema requires. Anything that can fill them gets a valid document.
- `alert_cap`: one alert's current state (its latest event, plus the events of its episode for the
  thread) → a `CapMessage`, one `<info>` per language (vi-VN, en-US); `incident_cap`: the same for an
  incident (issue 13), its member alerts as parameters.

The mapping from our states and severities to CAP (`cap_codes`; the table with the reasons is in the
README, "Alerts" → "CAP 1.2"):
- severity: critical → Severe, warning → Moderate, info → Minor (Extreme, an "extraordinary threat to
  life or property", is a duty officer's judgement, not an automatic rule's);
- pending → urgency Expected, certainty Likely; firing (and repeat, acknowledged, escalated) → Immediate,
  Observed, responseType Monitor; resolved → Past, Observed, responseType AllClear;
- msgType: Alert for the first message of the episode's thread (its first firing event, or its first
  event when it never fired), Update with `<references>` to that message for every later event,
  resolved included (CAP's Cancel withdraws a message sent in error, which an alert that ended is not);
- scope: Public when the rule says `public: true`, else Restricted with a `<restriction>`.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET  # noqa: S405  # we only build and serialise XML, never parse input
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from controlroom.alerts.incident_rules import incident_type_name
from controlroom.catalog import NATIONAL, Catalog

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"
VN_TZ = timezone(timedelta(hours=7), "ICT")  # Việt Nam: UTC+07:00 all year, no daylight saving
LANGUAGES = ("vi-VN", "en-US")
GEOCODE_PROVINCE = "VN-province-code"  # the 2-digit province code (controlroom/data/provinces.csv)
GEOCODE_COUNTRY = "ISO3166-1"  # national alerts: the whole country, "VN"
EVENT_CODE_RULE = "controlroom-rule"  # the rule id, for machine consumers that filter by rule
DEFAULT_SENDER = "controlroom@ops.gov.vn"
SENDER_NAME = {"vi-VN": "Trung tâm Điều hành Quốc gia", "en-US": "National Operations Center"}
RESTRICTION = {"vi-VN": "Chỉ dành cho cán bộ trực Trung tâm Điều hành", "en-US": "Control Room operators only"}

CAP_SEVERITY = {"critical": "Severe", "warning": "Moderate", "info": "Minor"}
# our state → (urgency, certainty, responseType)
CAP_STATE = {
    "pending": ("Expected", "Likely", "Monitor"),
    "firing": ("Immediate", "Observed", "Monitor"),
    "resolved": ("Past", "Observed", "AllClear"),
}
# CAP <category> per feed (anything else: Other); data-pipeline rules are about our own links: Infra
FEED_CATEGORY = {
    "water_level": "Met",  # floods are "Met" in CAP 1.2
    "air_quality_pm25": "Env",
    "epidemic_cases": "Health",
    "sar_incidents": "Rescue",
    "traffic_incidents": "Transport",
    "hotline_calls": "Safety",
    "citizen_feedback": "Safety",
    "electricity_load": "Infra",
}
PIPELINE_RULE_TYPES = ("staleness", "data_quality")
_EVENT_PREFIX = {  # <event>: what happened, per rule type about our pipeline (else the feed's name)
    "staleness": {"vi-VN": "Mất kết nối dữ liệu", "en-US": "Data connection lost"},
    "data_quality": {"vi-VN": "Chất lượng dữ liệu", "en-US": "Data quality"},
}
_STATE_WORD = {
    "vi-VN": {"pending": "đang chờ xác nhận", "firing": "đang cảnh báo", "resolved": "đã kết thúc"},
    "en-US": {"pending": "pending", "firing": "firing", "resolved": "resolved"},
}


class CapError(ValueError):
    """An alert row that cannot become a CAP document (unknown state or severity)."""


# --- the CAP structure ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CapArea:
    desc: str
    geocodes: tuple[tuple[str, str], ...] = ()
    circles: tuple[str, ...] = ()  # "lat,lon radius_km"


@dataclass(frozen=True)
class CapInfo:
    language: str
    categories: tuple[str, ...]
    event: str
    urgency: str
    severity: str
    certainty: str
    response_types: tuple[str, ...] = ()
    event_codes: tuple[tuple[str, str], ...] = ()
    onset_ms: int | None = None
    expires_ms: int | None = None
    sender_name: str = ""
    headline: str = ""
    description: str = ""
    instruction: str = ""
    web: str = ""
    parameters: tuple[tuple[str, str], ...] = ()
    areas: tuple[CapArea, ...] = ()


@dataclass(frozen=True)
class CapMessage:
    identifier: str
    sender: str
    sent_ms: int
    msg_type: str  # Alert | Update | Cancel
    scope: str  # Public | Restricted
    status: str = "Actual"
    source: str = ""
    restriction: str = ""
    note: str = ""
    references: tuple[str, ...] = ()  # each "sender,identifier,sent"
    incidents: tuple[str, ...] = ()
    infos: tuple[CapInfo, ...] = field(default_factory=tuple)


def cap_time(ms: int) -> str:
    """CAP's dateTime: seconds, explicit offset, here Việt Nam's +07:00 (the schema allows no fraction)."""
    return datetime.fromtimestamp(ms / 1000, VN_TZ).replace(microsecond=0).isoformat()


def cap_reference(sender: str, identifier: str, sent_ms: int) -> str:
    return f"{sender},{identifier},{cap_time(sent_ms)}"


def _sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
    el.text = text
    return el


def _pairs(parent: ET.Element, tag: str, pairs: Iterable[tuple[str, str]]) -> None:
    for name, value in pairs:
        el = ET.SubElement(parent, f"{{{CAP_NS}}}{tag}")
        _sub(el, "valueName", name)
        _sub(el, "value", value)


def _info(parent: ET.Element, info: CapInfo) -> None:
    el = ET.SubElement(parent, f"{{{CAP_NS}}}info")
    _sub(el, "language", info.language)
    for c in info.categories:
        _sub(el, "category", c)
    _sub(el, "event", info.event)
    for r in info.response_types:
        _sub(el, "responseType", r)
    _sub(el, "urgency", info.urgency)
    _sub(el, "severity", info.severity)
    _sub(el, "certainty", info.certainty)
    _pairs(el, "eventCode", info.event_codes)
    if info.onset_ms is not None:
        _sub(el, "onset", cap_time(info.onset_ms))
    if info.expires_ms is not None:
        _sub(el, "expires", cap_time(info.expires_ms))
    for tag, text in (("senderName", info.sender_name), ("headline", info.headline),
                      ("description", info.description), ("instruction", info.instruction), ("web", info.web)):
        if text:
            _sub(el, tag, text)
    _pairs(el, "parameter", info.parameters)
    for area in info.areas:
        a = ET.SubElement(el, f"{{{CAP_NS}}}area")
        _sub(a, "areaDesc", area.desc)
        for circle in area.circles:
            _sub(a, "circle", circle)
        _pairs(a, "geocode", area.geocodes)


def cap_element(msg: CapMessage) -> ET.Element:
    """The `<alert>` element, children in the schema's order."""
    root = ET.Element(f"{{{CAP_NS}}}alert")
    for tag, text in (("identifier", msg.identifier), ("sender", msg.sender), ("sent", cap_time(msg.sent_ms)),
                      ("status", msg.status), ("msgType", msg.msg_type), ("source", msg.source),
                      ("scope", msg.scope), ("restriction", msg.restriction), ("note", msg.note),
                      ("references", " ".join(msg.references)), ("incidents", " ".join(msg.incidents))):
        if text:
            _sub(root, tag, text)
    for info in msg.infos:
        _info(root, info)
    return root


def cap_xml(msg: CapMessage) -> bytes:
    """The CAP 1.2 document, UTF-8, with an XML declaration and the CAP namespace as the default one."""
    root = cap_element(msg)
    ET.indent(root)  # for people reading it; whitespace between elements means nothing to CAP
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True, default_namespace=CAP_NS)
    return out


# --- one alert → CAP ----------------------------------------------------------------------------------------

def cap_codes(state: str, severity: str) -> dict[str, str]:
    """Our state and severity → CAP urgency, severity, certainty and responseType (the README's table)."""
    if state not in CAP_STATE:
        raise CapError(f"state: no CAP mapping for {state!r} (known: {', '.join(CAP_STATE)})")
    if severity not in CAP_SEVERITY:
        raise CapError(f"severity: no CAP mapping for {severity!r} (known: {', '.join(CAP_SEVERITY)})")
    urgency, certainty, response = CAP_STATE[state]
    return {"urgency": urgency, "severity": CAP_SEVERITY[severity], "certainty": certainty,
            "responseType": response}


def cap_identifier(alert_id: str, seq: int) -> str:
    """Stable per (alert, seq): the same event always has the same CAP identifier."""
    return f"controlroom-{alert_id}-{seq}"


def thread_start(current: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The first message of the current episode's CAP thread: its first firing event, or its first event
    when it never fired (an episode = the events sharing the current one's `starts_at`)."""
    episode = sorted((e for e in history if int(e["starts_at"]) == int(current["starts_at"])
                      and int(e["seq"]) <= int(current["seq"])), key=lambda e: int(e["seq"]))
    fired = [e for e in episode if e["state"] == "firing"]
    return fired[0] if fired else (episode[0] if episode else current)


def flat_parameters(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Evidence as CAP parameters: nested keys joined with dots, numbers as written in JSON."""
    if isinstance(value, Mapping):
        out: list[tuple[str, str]] = []
        for k in sorted(value):
            out.extend(flat_parameters(f"{prefix}.{k}" if prefix else str(k), value[k]))
        return out
    if value is None:
        return []
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    if isinstance(value, float) and not math.isfinite(value):
        return [(prefix, str(value))]
    if isinstance(value, str):
        return [(prefix, value)]
    return [(prefix, orjson.dumps(value).decode())]


def province_area(catalog: Catalog, code: str, language: str) -> CapArea:
    """A province as a CAP area: its name, its code as a geocode and its centre as a point (radius 0:
    we hold no boundary polygons; the geocode is the authoritative area). National: the whole country."""
    if code == NATIONAL or code not in catalog.provinces:
        desc = "Toàn quốc" if language.startswith("vi") else "Viet Nam (national)"
        return CapArea(desc=desc, geocodes=((GEOCODE_COUNTRY, "VN"),))
    p = catalog.provinces[code]
    return CapArea(desc=p.name_vi if language.startswith("vi") else p.name_en,
                   geocodes=((GEOCODE_PROVINCE, p.code),), circles=(f"{p.lat:.4f},{p.lon:.4f} 0",))


def _event_name(catalog: Catalog, alert: Mapping[str, Any], language: str) -> str:
    feed = catalog.feeds.get(str(alert["feed"]))
    vi = language.startswith("vi")
    name = (feed.name_vi if vi else feed.name_en) if feed else str(alert["feed"])
    prefix = _EVENT_PREFIX.get(str(alert.get("rule_type", "")))
    return f"{prefix[language]}: {name}" if prefix else name


def _acked(ack: Any, vi: bool) -> list[str]:
    return [f"{'Đã tiếp nhận bởi' if vi else 'Acknowledged by'} {ack.get('by', '')}"] if ack else []


def _description(catalog: Catalog, alert: Mapping[str, Any], language: str) -> str:
    vi = language.startswith("vi")
    feed = catalog.feeds.get(str(alert["feed"]))
    unit = f" {feed.unit}" if feed and feed.unit else ""
    value = alert.get("value")
    dims = ", ".join(f"{k}={v}" for k, v in sorted(dict(alert.get("dims") or {}).items()))
    state = _STATE_WORD[language].get(str(alert["state"]), str(alert["state"]))
    parts = [f"{'Trạng thái' if vi else 'State'}: {state} ({alert['event']})"]
    if value is not None:
        parts.append(f"{'Giá trị' if vi else 'Value'}: {float(value):g}{unit}")
    if dims:
        parts.append(f"{'Chuỗi số liệu' if vi else 'Series'}: {dims}")
    parts.append(f"{'Bắt đầu' if vi else 'Since'}: {cap_time(int(alert['starts_at']))}")
    if alert.get("ends_at") is not None:
        parts.append(f"{'Kết thúc' if vi else 'Ended'}: {cap_time(int(alert['ends_at']))}")
    parts += _acked(alert.get("ack"), vi)
    parts.append(f"{'Quy tắc' if vi else 'Rule'}: {alert['rule_id']} v{alert.get('rule_version', '')}")
    return ". ".join(parts) + "."


def alert_parameters(alert: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The alert's identity, value and evidence as CAP parameters (the same in every language)."""
    head: list[tuple[str, str]] = [
        ("alert_id", str(alert["alert_id"])), ("seq", str(alert["seq"])), ("event", str(alert["event"])),
        ("state", str(alert["state"])), ("severity", str(alert["severity"])), ("rule_id", str(alert["rule_id"])),
        ("rule_version", str(alert.get("rule_version", ""))), ("feed", str(alert["feed"])),
        ("province", str(alert["province"])),
    ]
    head += flat_parameters("dims", dict(alert.get("dims") or {}))
    if alert.get("value") is not None:
        head.append(("value", orjson.dumps(alert["value"]).decode()))
    return head + flat_parameters("evidence", dict(alert.get("evidence") or {}))


def alert_cap(alert: Mapping[str, Any], history: Sequence[Mapping[str, Any]], *, catalog: Catalog,
              sender: str = DEFAULT_SENDER, public: bool = False, incidents: Sequence[str] = ()) -> CapMessage:
    """One alert's current state as a CAP message.

    `alert` is the alert as GET /alerts/{id} returns it (times in epoch ms: starts_at, ends_at, event_at);
    `history` its events (the current one may be among them). `public` is the rule's `public` flag.
    """
    codes = cap_codes(str(alert["state"]), str(alert["severity"]))
    first = thread_start(alert, history)
    is_first = int(first["seq"]) == int(alert["seq"])
    references = () if is_first else (
        cap_reference(sender, cap_identifier(str(alert["alert_id"]), int(first["seq"])), int(first["event_at"])),)
    feed = catalog.feeds.get(str(alert["feed"]))
    category = ("Infra" if alert.get("rule_type") in PIPELINE_RULE_TYPES
                else FEED_CATEGORY.get(str(alert["feed"]), "Other"))
    params = tuple(alert_parameters(alert))
    infos = tuple(
        CapInfo(language=lang, categories=(category,), event=_event_name(catalog, alert, lang),
                urgency=codes["urgency"], severity=codes["severity"], certainty=codes["certainty"],
                response_types=(codes["responseType"],), event_codes=((EVENT_CODE_RULE, str(alert["rule_id"])),),
                onset_ms=int(alert["starts_at"]), sender_name=SENDER_NAME[lang],
                headline=str(alert.get("summary_vi" if lang.startswith("vi") else "summary_en") or ""),
                description=_description(catalog, alert, lang), web=str(alert.get("link") or ""),
                parameters=params, areas=(province_area(catalog, str(alert["province"]), lang),))
        for lang in LANGUAGES)
    return CapMessage(identifier=cap_identifier(str(alert["alert_id"]), int(alert["seq"])), sender=sender,
                      sent_ms=int(alert["event_at"]), msg_type="Alert" if is_first else "Update",
                      scope="Public" if public else "Restricted",
                      restriction="" if public else RESTRICTION["en-US"],
                      source=feed.source if feed else "", references=references, incidents=tuple(incidents),
                      infos=infos)


# --- one incident → CAP ------------------------------------------------------------------------------------

EVENT_CODE_INCIDENT = "controlroom-incident-type"  # the incident type id (controlroom/data/incidents.yaml)
INCIDENT_SOURCE = "Control Room incident correlation"
_INCIDENT_STATE_WORD = {
    "vi-VN": {"open": "đang mở", "acknowledged": "đã tiếp nhận", "resolved": "đã kết thúc"},
    "en-US": {"open": "open", "acknowledged": "acknowledged", "resolved": "resolved"},
}


def incident_identifier(incident_id: str, seq: int) -> str:
    """Stable per (incident, seq), and never equal to an alert's (cap_identifier)."""
    return f"controlroom-incident-{incident_id}-{seq}"


def _incident_description(incident: Mapping[str, Any], language: str) -> str:
    vi = language.startswith("vi")
    members = list(incident.get("members") or [])
    firing = sum(1 for m in members if m.get("state") == "firing")
    state = _INCIDENT_STATE_WORD[language].get(str(incident["state"]), str(incident["state"]))
    parts = [f"{'Trạng thái' if vi else 'State'}: {state} ({incident['event']})",
             f"{'Cảnh báo thành phần' if vi else 'Member alerts'}: {len(members)} "
             f"({'đang báo' if vi else 'firing'}: {firing})"]
    if incident.get("signals"):
        parts.append(f"{'Tín hiệu' if vi else 'Signals'}: {', '.join(incident['signals'])}")
    parts.append(f"{'Mở lúc' if vi else 'Opened'}: {cap_time(int(incident['opened_at']))}")
    if incident.get("resolved_at") is not None:
        parts.append(f"{'Kết thúc' if vi else 'Resolved'}: {cap_time(int(incident['resolved_at']))}")
    parts += _acked(incident.get("ack"), vi)
    if incident.get("assignee"):
        parts.append(f"{'Giao cho' if vi else 'Assigned to'} {incident['assignee']}")
    parts.append(f"{'Loại sự cố' if vi else 'Incident type'}: {incident['type']} v{incident.get('type_version', '')}")
    return ". ".join(parts) + "."


def incident_parameters(incident: Mapping[str, Any], alerts: Mapping[str, Mapping[str, Any]],
                        sender: str) -> list[tuple[str, str]]:
    """The incident's identity and state, then each member alert (`member.<n>.…`, in the incident's order) with
    `member.<n>.cap`: the reference (sender,identifier,sent) of that alert's current CAP document when known."""
    ack = incident.get("ack") or {}
    out: list[tuple[str, str]] = [
        ("incident_id", str(incident["incident_id"])), ("seq", str(incident["seq"])),
        ("event", str(incident["event"])), ("state", str(incident["state"])), ("type", str(incident["type"])),
        ("type_version", str(incident.get("type_version", ""))), ("severity", str(incident["severity"])),
        ("province", str(incident["province"])), ("signals", ",".join(incident.get("signals") or [])),
        ("members", str(len(incident.get("members") or []))),
    ]
    if incident.get("assignee"):
        out.append(("assignee", str(incident["assignee"])))
    if ack.get("by"):
        out.append(("ack_by", str(ack["by"])))
    for n, m in enumerate(incident.get("members") or [], start=1):
        out += [(f"member.{n}.{k}", str(m.get(k, ""))) for k in
                ("alert_id", "rule_id", "feed", "province", "signal", "state", "severity")]
        a = alerts.get(str(m.get("alert_id")))
        if a is not None and a.get("seq") is not None and a.get("event_at") is not None:
            out.append((f"member.{n}.cap", cap_reference(sender, cap_identifier(str(a["alert_id"]), int(a["seq"])),
                                                         int(a["event_at"]))))
    return [(k, v) for k, v in out if v]  # an empty <value> is valid CAP but nothing to read (and parsers choke)


def incident_cap(incident: Mapping[str, Any], alerts: Sequence[Mapping[str, Any]] = (), *, catalog: Catalog,
                 sender: str = DEFAULT_SENDER) -> CapMessage:
    """One incident's current state as a CAP message.

    `incident` is the incident as GET /incidents/{id} returns it (times in epoch ms; `members` its alerts as
    the correlator knows them); `alerts` the member alerts' current rows (alert_id, seq, event_at), which give
    each member's CAP reference. Mapping: open and acknowledged are an ongoing situation (urgency Immediate,
    certainty Observed, Monitor), resolved an AllClear (Past); the incident's first event (seq 1, `opened`)
    is the thread's Alert, every later one an Update referencing it; `<incidents>` names the incident id, as
    CAP means that element; the member alerts are parameters, not `<references>` (an incident's message does
    not supersede its alerts' messages). Restricted: incident types carry no public flag.
    """
    state = "resolved" if incident["state"] == "resolved" else "firing"
    codes = cap_codes(state, str(incident["severity"]))
    iid, seq = str(incident["incident_id"]), int(incident["seq"])
    references = () if seq == 1 else (cap_reference(sender, incident_identifier(iid, 1), int(incident["opened_at"])),)
    feeds = {str(m.get("feed")) for m in incident.get("members") or []}
    categories = tuple(sorted({FEED_CATEGORY.get(f, "Other") for f in feeds})) or ("Other",)
    params = tuple(incident_parameters(incident, {str(a["alert_id"]): a for a in alerts}, sender))
    province = str(incident["province"])
    infos = tuple(
        CapInfo(language=lang, categories=categories,
                event=incident_type_name(str(incident["title_vi" if lang.startswith("vi") else "title_en"]),
                                         catalog, province, "vi" if lang.startswith("vi") else "en"),
                urgency=codes["urgency"], severity=codes["severity"], certainty=codes["certainty"],
                response_types=(codes["responseType"],), event_codes=((EVENT_CODE_INCIDENT, str(incident["type"])),),
                onset_ms=int(incident["opened_at"]), sender_name=SENDER_NAME[lang],
                headline=str(incident["title_vi" if lang.startswith("vi") else "title_en"]),
                description=_incident_description(incident, lang), parameters=params,
                areas=(province_area(catalog, province, lang),))
        for lang in LANGUAGES)
    return CapMessage(identifier=incident_identifier(iid, seq), sender=sender, sent_ms=int(incident["event_at"]),
                      msg_type="Alert" if seq == 1 else "Update", scope="Restricted",
                      restriction=RESTRICTION["en-US"], source=INCIDENT_SOURCE, references=references,
                      incidents=(iid,), infos=infos)


# --- the Atom feed of public alerts -------------------------------------------------------------------------

@dataclass(frozen=True)
class FeedEntry:
    message: CapMessage
    cap_url: str  # where the entry's CAP document is served
    updated_ms: int


def _atom(parent: ET.Element, tag: str, text: str = "", **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)  # unqualified: the root's xmlns puts them in Atom's namespace
    if text:
        el.text = text
    return el


def atom_feed(entries: Sequence[FeedEntry], *, feed_id: str, self_url: str, title: str, now_ms: int) -> bytes:
    """An Atom (RFC 4287) feed whose entries link to CAP documents (as the OASIS CAP feed profile and
    national alert hubs do): one entry per alert, its id the CAP message's, its link rel=alternate
    type=application/cap+xml; the entry's CAP `<info>` in English gives title and summary."""
    root = ET.Element("feed", {"xmlns": ATOM_NS})
    _atom(root, "id", feed_id)
    _atom(root, "title", title)
    updated = max((e.updated_ms for e in entries), default=now_ms)
    _atom(root, "updated", _atom_time(updated))
    _atom(root, "link", rel="self", href=self_url, type=ATOM_MEDIA_TYPE)
    author = _atom(root, "author")
    _atom(author, "name", SENDER_NAME["en-US"])
    for e in entries:
        msg = e.message
        info = next((i for i in msg.infos if i.language == "en-US"), msg.infos[0] if msg.infos else None)
        entry = _atom(root, "entry")
        _atom(entry, "id", f"urn:cap:{msg.sender}:{msg.identifier}")
        _atom(entry, "title", (info.headline or info.event) if info else msg.identifier)
        _atom(entry, "updated", _atom_time(e.updated_ms))
        _atom(entry, "published", _atom_time(msg.sent_ms))
        _atom(entry, "link", rel="alternate", href=e.cap_url, type=CAP_MEDIA_TYPE)
        if info is not None:
            _atom(entry, "summary", f"{info.severity}, {info.urgency}, {info.certainty} — {info.event}; "
                                    f"{', '.join(a.desc for a in info.areas)}")
    ET.indent(root)
    out: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return out


def _atom_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(VN_TZ).replace(microsecond=0).isoformat()
