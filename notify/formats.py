"""What a notification looks like on the wire: webhook bodies (json, Alertmanager v4) and e-mails (vi, en).

Pure code: a notification (notify.grouping: one group of a subscription, the alerts it shows and the events
it delivers) and the catalog in; bytes, headers or an EmailMessage out. Times in e-mails are shown in
Asia/Ho_Chi_Minh. A group of one alert reads as before grouping existed (an e-mail about that alert); a
larger group is summarised by province. An incident (its own group) has its own JSON body, Alertmanager alert
and e-mail (the incident and its member alerts).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from controlroom.alerts.incident_rules import incident_type_name
from controlroom.alerts.subscriptions import Subscription, is_incident
from controlroom.catalog import NATIONAL, Catalog
from controlroom.schema import SEVERITIES, AlertEvent
from notify.grouping import Notification

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
AM_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"
EVENT_HEADER = "X-ControlRoom-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EMAIL_IDEMPOTENCY_HEADER = "X-Idempotency-Key"
MAX_EVIDENCE_LINES = 8
MAX_SUBJECT = 200


def idempotency_key(alert_id: str, seq: int, subscription_id: str) -> str:
    """One alert event for one subscription: recorded once finished; a receiver drops a key it has seen."""
    return f"{alert_id}:{seq}:{subscription_id}"


def incident_key(incident_id: str, seq: int, subscription_id: str) -> str:
    """One incident event for one subscription (never equal to an alert event's key)."""
    return f"incident-{incident_id}:{seq}:{subscription_id}"


def event_key(event: AlertEvent, sub: Subscription) -> str:
    if is_incident(event):
        return incident_key(str(event["incident_id"]), int(event["seq"]), sub.id)  # type: ignore[typeddict-item]
    return idempotency_key(str(event["alert_id"]), int(event["seq"]), sub.id)


def event_name(event: AlertEvent) -> str:
    """The X-ControlRoom-Event header: an alert's event (`firing`…), an incident's prefixed (`incident.opened`)."""
    return f"incident.{event['event']}" if is_incident(event) else str(event["event"])


# --- webhooks ----------------------------------------------------------------------------------------

AM_LABEL = {"rule": "alertname"}  # our group_by label → the Alertmanager label that carries it
_LABEL_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")
_FNV_OFFSET, _FNV_PRIME, _U64 = 14695981039346656037, 1099511628211, (1 << 64) - 1


def go_time(ms: int) -> str:
    """A UTC time as Go's RFC 3339 (Alertmanager's JSON): milliseconds without trailing zeros, none when whole."""
    text = datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ms % 1000:03d}".rstrip("0")
    return f"{text}.{frac}Z" if frac else f"{text}Z"


def am_label_name(name: str) -> str:
    """A valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*): other characters become '_'."""
    clean = _LABEL_NAME_BAD.sub("_", name) or "_"
    return f"_{clean}" if clean[0].isdigit() else clean


AM_FIXED_LABELS = ("alertname", "severity", "feed", "province", "rule_type", "category", "agency", "alert_id")


def am_dim_label(dim: str) -> str:
    """The label that carries a series' dim: its name made valid, `dim_<name>` when a fixed label has that name."""
    name = am_label_name(dim)
    return f"dim_{name}" if name in AM_FIXED_LABELS else name


def am_labels(event: AlertEvent, catalog: Catalog) -> dict[str, str]:
    """An alert's labels as Prometheus would send them: alertname (the rule id), severity, feed, province,
    rule_type, category, agency, alert_id and the series' dims. A dim named like one of those (traffic incidents'
    `severity`: fatal, serious…) is sent as `dim_<name>`, so neither hides the other. Empty values are left out
    (Prometheus and Alertmanager treat an empty label as absent)."""
    feed = catalog.feeds.get(str(event["feed"]))
    labels = {"alertname": str(event["rule_id"]), "severity": str(event["severity"]), "feed": str(event["feed"]),
              "province": str(event["province"]), "rule_type": str(event["rule_type"]),
              "category": feed.category if feed else "", "agency": catalog.registry.supplier_of_alert(event),
              "alert_id": str(event["alert_id"])}
    labels.update({am_dim_label(str(k)): str(v) for k, v in (event.get("dims") or {}).items()})
    return {k: v for k, v in labels.items() if v}


def am_annotations(event: AlertEvent) -> dict[str, str]:
    """summary (English), summary_vi, summary_en, the event (kind and seq), the rule's version, the value."""
    out = {"summary": str(event["summary_en"]), "summary_vi": str(event["summary_vi"]),
           "summary_en": str(event["summary_en"]), "event": str(event["event"]), "seq": str(event["seq"]),
           "rule_version": str(event.get("rule_version", ""))}
    value = event.get("value")
    if value is not None:
        out["value"] = f"{value:g}" if isinstance(value, float) else str(value)
    return {k: v for k, v in out.items() if v}


def am_fingerprint(labels: dict[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (Prometheus model.LabelSet.Fingerprint: FNV-1a 64 over the
    sorted names and values, each followed by 0xff), as 16 hex digits."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for b in name.encode() + b"\xff" + labels[name].encode() + b"\xff":
            h = ((h ^ b) * _FNV_PRIME) & _U64
    return f"{h:016x}"


def _am_alert(event: AlertEvent, catalog: Catalog) -> dict[str, Any]:
    status = "resolved" if event["event"] == "resolved" else "firing"
    labels = am_labels(event, catalog)
    ends_at = event.get("ends_at")
    return {"status": status, "labels": labels, "annotations": am_annotations(event),
            "startsAt": go_time(int(event["starts_at"])),
            "endsAt": go_time(int(ends_at)) if ends_at is not None and status == "resolved" else AM_ZERO_TIME,
            "generatorURL": str(event.get("link") or ""), "fingerprint": am_fingerprint(labels)}


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    """The pairs every dict has (Alertmanager's commonLabels / commonAnnotations)."""
    if not dicts:
        return {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        out = {k: v for k, v in out.items() if d.get(k) == v}
    return out


def am_group_key(group_labels: dict[str, str], route_key: str = "{}") -> str:
    """Alertmanager's groupKey: the route's key, then the group labels sorted by name."""
    return f"{route_key}:{{" + ", ".join(f'{k}="{group_labels[k]}"' for k in sorted(group_labels)) + "}"


def _am_incident(inc: dict[str, Any], catalog: Catalog) -> dict[str, Any]:
    """An incident as one Alertmanager alert: alertname `incident`, the type, province and severity as labels,
    the title and the member alerts as annotations, from when it opened to when it resolved."""
    labels = {"alertname": "incident", "incident_type": str(inc["type"]), "severity": str(inc["severity"]),
              "province": str(inc["province"]), "incident_id": str(inc["incident_id"]), "kind": "incident"}
    members = inc.get("members") or []
    annotations = {"summary": str(inc["title_en"]), "summary_vi": str(inc["title_vi"]),
                   "summary_en": str(inc["title_en"]), "event": str(inc["event"]), "seq": str(inc["seq"]),
                   "state": str(inc["state"]), "members": ",".join(str(m.get("alert_id")) for m in members),
                   "signals": ",".join(inc.get("signals") or [])}
    resolved = inc.get("resolved_at")
    return {"status": "resolved" if inc["event"] == "resolved" else "firing", "labels": labels,
            "annotations": annotations, "startsAt": go_time(int(inc["opened_at"])),
            "endsAt": go_time(int(resolved)) if resolved is not None else AM_ZERO_TIME,
            "generatorURL": "", "fingerprint": str(inc["incident_id"])}


def alertmanager_payload(n: Notification, catalog: Catalog, external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook v4 payload: the group's alerts, its labels as Alertmanager names them (the
    groupKey is that of a receiver on Alertmanager's root route; an incident: one alert, see _am_incident)."""
    alerts = [_am_incident(dict(a), catalog) if is_incident(a) else _am_alert(a, catalog) for a in n.alerts]
    group_labels = {AM_LABEL.get(k, k): v for k, v in n.labels.items()}
    return {"version": "4", "groupKey": am_group_key(group_labels),
            "status": n.status, "receiver": n.sub.id, "alerts": alerts, "groupLabels": group_labels,
            "commonLabels": _common([a["labels"] for a in alerts]),
            "commonAnnotations": _common([a["annotations"] for a in alerts]),
            "externalURL": external_url, "truncatedAlerts": 0}


def webhook_body(n: Notification, catalog: Catalog, external_url: str = "") -> bytes:
    """The exact bytes POSTed (and signed) for this subscription's format. JSON: the group (key, labels,
    status), the events this notification delivers (each with its own idempotency key, so a receiver can
    drop a repeat per event) and every alert of the group as it stands."""
    if n.sub.format == "alertmanager":
        return orjson.dumps(alertmanager_payload(n, catalog, external_url))
    if n.incident:
        return orjson.dumps({
            "kind": "incident", "idempotency_key": n.key, "subscription_id": n.sub.id,
            "group": {"key": n.group_key, "labels": n.labels}, "status": n.status,
            "delivers": [{"idempotency_key": j.key, "incident_id": j.subject, "seq": j.event["seq"],
                          "event": j.event["event"]} for j in n.jobs],
            "incident": n.alerts[-1]})
    return orjson.dumps({
        "idempotency_key": n.key, "subscription_id": n.sub.id,
        "group": {"key": n.group_key, "labels": n.labels}, "status": n.status,
        "delivers": [{"idempotency_key": j.key, "alert_id": j.event["alert_id"], "seq": j.event["seq"],
                      "event": j.event["event"]} for j in n.jobs],
        "alerts": n.alerts})


# --- e-mail --------------------------------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "vi": {"event": "Sự kiện", "severity": "Mức độ", "summary": "Nội dung", "feed": "Nguồn dữ liệu",
           "province": "Tỉnh/thành", "dims": "Phân tách", "value": "Giá trị", "evidence": "Căn cứ",
           "starts": "Bắt đầu", "ends": "Kết thúc", "at": "Thời điểm sự kiện", "ack": "Tiếp nhận bởi",
           "link": "Chi tiết", "key": "Mã chống trùng lặp", "national": "Toàn quốc", "tz": "giờ Việt Nam",
           "none": "—", "footer": "Thư tự động từ Control Room, vui lòng không trả lời.", "alerts": "cảnh báo",
           "new": "mới trong thư này", "by_province": "Theo tỉnh/thành"},
    "en": {"event": "Event", "severity": "Severity", "summary": "Summary", "feed": "Feed",
           "province": "Province", "dims": "Dimensions", "value": "Value", "evidence": "Evidence",
           "starts": "Started", "ends": "Ended", "at": "Event time", "ack": "Acknowledged by",
           "link": "Details", "key": "Idempotency key", "national": "National", "tz": "Vietnam time",
           "none": "—", "footer": "Automatic message from Control Room; please do not reply.", "alerts": "alerts",
           "new": "new in this message", "by_province": "By province"},
}
EVENT_NAMES = {
    "vi": {"pending": "CHỜ XÁC NHẬN", "firing": "ĐANG BÁO ĐỘNG", "resolved": "ĐÃ KẾT THÚC", "repeat": "NHẮC LẠI",
           "acknowledged": "ĐÃ TIẾP NHẬN", "escalated": "LEO THANG"},
    "en": {"pending": "PENDING", "firing": "FIRING", "resolved": "RESOLVED", "repeat": "REMINDER",
           "acknowledged": "ACKNOWLEDGED", "escalated": "ESCALATED"},
}
SEVERITY_ORDER = {s: i for i, s in enumerate(SEVERITIES)}
SEVERITY_NAMES = {"vi": {"info": "Thông tin", "warning": "Cảnh báo", "critical": "Khẩn cấp"},
                  "en": {"info": "Info", "warning": "Warning", "critical": "Critical"}}


def vn_time(ms: int | None, lang: str) -> str:
    if ms is None:
        return LABELS[lang]["none"]
    local = datetime.fromtimestamp(ms / 1000, tz=VN_TZ)
    return f"{local:%Y-%m-%d %H:%M:%S} ({LABELS[lang]['tz']}, UTC+7)"


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _number(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _evidence_lines(evidence: Any) -> list[str]:
    if not isinstance(evidence, dict):
        return []
    lines = []
    for k, v in list(evidence.items())[:MAX_EVIDENCE_LINES]:
        shown = _number(v) if isinstance(v, int | float | str | bool) or v is None else orjson.dumps(v).decode()
        lines.append(f"  - {k}: {_one_line(shown, 120)}")
    if len(evidence) > MAX_EVIDENCE_LINES:
        lines.append(f"  - … (+{len(evidence) - MAX_EVIDENCE_LINES})")
    return lines


def _names(event: AlertEvent, catalog: Catalog, lang: str) -> tuple[str, str, str]:
    """(feed name, province name, unit) in the language, falling back to the codes."""
    feed = catalog.feeds.get(str(event.get("feed")))
    code = str(event.get("province"))
    province = catalog.provinces.get(code)
    feed_name = (feed.name_vi if lang == "vi" else feed.name_en) if feed else str(event.get("feed"))
    if code == NATIONAL:
        prov_name = LABELS[lang]["national"]
    else:
        prov_name = (province.name_vi if lang == "vi" else province.name_en) if province else code
    return feed_name, prov_name, feed.unit if feed else ""


def email_subject(event: AlertEvent, catalog: Catalog, lang: str) -> str:
    _feed, province, _unit = _names(event, catalog, lang)
    severity = SEVERITY_NAMES[lang].get(str(event["severity"]), str(event["severity"]))
    summary = str(event["summary_vi"] if lang == "vi" else event["summary_en"])
    what = EVENT_NAMES[lang].get(str(event["event"]), str(event["event"]))
    return _one_line(f"[{severity}] {what}: {summary} – {province}", MAX_SUBJECT)


def _ack_lines(ack: Any, lang: str) -> list[str]:
    """Who acknowledged (with the comment), when someone did."""
    if not isinstance(ack, dict) or not ack.get("by"):
        return []
    comment = f" – {_one_line(str(ack['comment']), 200)}" if ack.get("comment") else ""
    return [f"{LABELS[lang]['ack']}: {ack['by']}{comment}"]


def email_text(event: AlertEvent, catalog: Catalog, lang: str, key: str) -> str:
    """The plain-text body: severity, summary, feed, province, value, evidence, times (UTC+7), link, key."""
    lab = LABELS[lang]
    feed, province, unit = _names(event, catalog, lang)
    dims = event.get("dims") or {}
    value = event.get("value")
    lines = [
        str(event["summary_vi"] if lang == "vi" else event["summary_en"]),
        "",
        f"{lab['event']}: {EVENT_NAMES[lang].get(str(event['event']), event['event'])} (#{event['seq']})",
        f"{lab['severity']}: {SEVERITY_NAMES[lang].get(str(event['severity']), event['severity'])}",
        f"{lab['feed']}: {feed} ({event['feed']})",
        f"{lab['province']}: {province} ({event['province']})",
    ]
    if dims:
        lines.append(f"{lab['dims']}: " + ", ".join(f"{k}={dims[k]}" for k in sorted(dims)))
    lines.append(f"{lab['value']}: " + (f"{_number(value)} {unit}".strip() if value is not None else lab["none"]))
    evidence = _evidence_lines(event.get("evidence"))
    if evidence:
        lines += [f"{lab['evidence']}:", *evidence]
    lines += [f"{lab['starts']}: {vn_time(event.get('starts_at'), lang)}",
              f"{lab['ends']}: {vn_time(event.get('ends_at'), lang)}",
              f"{lab['at']}: {vn_time(event.get('event_at'), lang)}"]
    lines += _ack_lines(event.get("ack"), lang)
    if event.get("link"):
        lines.append(f"{lab['link']}: {event['link']}")
    lines += [f"{lab['key']}: {key}", "", "-- ", lab["footer"]]
    return "\n".join(lines) + "\n"


def _group_title(n: Notification, catalog: Catalog, lang: str) -> str:
    """The group's labels in words: feed and province names, rule ids, severity names."""
    parts = []
    for label, value in n.labels.items():
        if label == "feed" and value in catalog.feeds:
            feed = catalog.feeds[value]
            parts.append(feed.name_vi if lang == "vi" else feed.name_en)
        elif label == "province":
            parts.append(_names({"feed": "", "province": value}, catalog, lang)[1])  # type: ignore[typeddict-item]
        elif label == "severity":
            parts.append(SEVERITY_NAMES[lang].get(value, value))
        else:
            parts.append(value)
    return " – ".join(p for p in parts if p)


def group_subject(n: Notification, catalog: Catalog, lang: str) -> str:
    worst = max((str(a["severity"]) for a in n.alerts), key=lambda sev: SEVERITY_ORDER.get(sev, 0), default="info")
    firing = sum(1 for a in n.alerts if a["event"] != "resolved")
    state = (EVENT_NAMES[lang]["firing"] if firing else EVENT_NAMES[lang]["resolved"])
    return _one_line(f"[{SEVERITY_NAMES[lang].get(worst, worst)}] {state}: {len(n.alerts)} "
                     f"{LABELS[lang]['alerts']} – {_group_title(n, catalog, lang)}", MAX_SUBJECT)


def group_text(n: Notification, catalog: Catalog, lang: str) -> str:
    """A group's e-mail: how many alerts, then each province with its alerts (worst first)."""
    lab = LABELS[lang]
    firing = sum(1 for a in n.alerts if a["event"] != "resolved")
    lines = [f"{_group_title(n, catalog, lang)}", "",
             f"{lab['alerts'].capitalize()}: {len(n.alerts)} ({EVENT_NAMES[lang]['firing']}: {firing}, "
             f"{EVENT_NAMES[lang]['resolved']}: {len(n.alerts) - firing}); {lab['new']}: {len(n.jobs)}", "",
             f"{lab['by_province']}:"]
    by_province: dict[str, list[AlertEvent]] = {}
    for a in n.alerts:
        by_province.setdefault(str(a["province"]), []).append(a)
    named = sorted((_names(alerts[0], catalog, lang)[1], code, alerts) for code, alerts in by_province.items())
    for name, code, alerts in named:
        lines.append(f"{name} ({code}): {len(alerts)}")
        for a in sorted(alerts, key=lambda a: -SEVERITY_ORDER.get(str(a["severity"]), 0)):
            summary = str(a["summary_vi"] if lang == "vi" else a["summary_en"])
            lines.append(f"  - [{SEVERITY_NAMES[lang].get(str(a['severity']), a['severity'])}] "
                         f"{EVENT_NAMES[lang].get(str(a['event']), a['event'])}: {_one_line(summary, 160)}")
    lines += ["", f"{lab['key']}: {n.key}", "", "-- ", lab["footer"]]
    return "\n".join(lines) + "\n"


INCIDENT_WORDS = {
    "vi": {"opened": "SỰ CỐ MỚI", "acknowledged": "SỰ CỐ ĐÃ TIẾP NHẬN", "resolved": "SỰ CỐ ĐÃ KẾT THÚC",
           "incident": "Sự cố", "type": "Loại", "state": "Trạng thái", "opened_at": "Mở lúc",
           "resolved_at": "Kết thúc lúc", "assignee": "Giao cho", "members": "Cảnh báo thành phần",
           "signals": "Tín hiệu"},
    "en": {"opened": "INCIDENT OPENED", "acknowledged": "INCIDENT ACKNOWLEDGED", "resolved": "INCIDENT RESOLVED",
           "incident": "Incident", "type": "Type", "state": "State", "opened_at": "Opened",
           "resolved_at": "Resolved", "assignee": "Assigned to", "members": "Member alerts",
           "signals": "Signals"},
}
INCIDENT_STATES = {"vi": {"open": "đang mở", "acknowledged": "đã tiếp nhận", "resolved": "đã kết thúc"},
                   "en": {"open": "open", "acknowledged": "acknowledged", "resolved": "resolved"}}
MEMBER_STATES = {"vi": {"firing": "đang báo", "resolved": "đã hết"}, "en": {"firing": "firing", "resolved": "resolved"}}


def incident_subject(inc: dict[str, Any], lang: str) -> str:
    words = INCIDENT_WORDS[lang]
    severity = SEVERITY_NAMES[lang].get(str(inc["severity"]), str(inc["severity"]))
    title = str(inc["title_vi"] if lang == "vi" else inc["title_en"])
    n = len(inc.get("members") or [])
    return _one_line(f"[{severity}] {words.get(str(inc['event']), str(inc['event']))}: {title} "
                     f"({n} {LABELS[lang]['alerts']})", MAX_SUBJECT)


def incident_text(inc: dict[str, Any], catalog: Catalog, lang: str, key: str) -> str:
    """An incident's e-mail: title, event, type, state, province, times (UTC+7), ack, assignee, each member."""
    lab, words = LABELS[lang], INCIDENT_WORDS[lang]
    code = str(inc["province"])
    _feed, province, _unit = _names({"feed": "", "province": code}, catalog, lang)  # type: ignore[typeddict-item]
    title = str(inc["title_vi"] if lang == "vi" else inc["title_en"])
    state = INCIDENT_STATES[lang]
    lines = [title, "",
             f"{lab['event']}: {words.get(str(inc['event']), inc['event'])} (#{inc['seq']})",
             f"{words['type']}: {incident_type_name(title, catalog, code, lang)} ({inc['type']})",
             f"{words['state']}: {state.get(str(inc['state']), inc['state'])}",
             f"{lab['severity']}: {SEVERITY_NAMES[lang].get(str(inc['severity']), inc['severity'])}",
             f"{lab['province']}: {province} ({code})",
             f"{words['opened_at']}: {vn_time(inc.get('opened_at'), lang)}"]
    if inc.get("resolved_at") is not None:
        lines.append(f"{words['resolved_at']}: {vn_time(inc.get('resolved_at'), lang)}")
    lines += _ack_lines(inc.get("ack"), lang)
    if inc.get("assignee"):
        lines.append(f"{words['assignee']}: {inc['assignee']}")
    if inc.get("signals"):
        lines.append(f"{words['signals']}: {', '.join(inc['signals'])}")
    members = inc.get("members") or []
    lines.append(f"{words['members']}: {len(members)}")
    for m in members:
        feed, prov, _u = _names(m, catalog, lang)
        severity = SEVERITY_NAMES[lang].get(str(m.get("severity")), str(m.get("severity")))
        member_state = MEMBER_STATES[lang].get(str(m.get("state")), str(m.get("state")))
        lines.append(f"  - [{severity}] {feed} – {prov} ({m.get('signal')}, {member_state}) {m.get('alert_id')}")
    lines += [f"{lab['key']}: {key}", "", "-- ", lab["footer"]]
    return "\n".join(lines) + "\n"


def build_email(n: Notification, catalog: Catalog, *, sender: str, now_ms: int) -> EmailMessage:
    """One e-mail per notification: about its incident, or its alert when the group has one, else the group
    by province."""
    sub, lang = n.sub, n.sub.language
    msg = EmailMessage()
    if n.incident:
        inc = dict(n.alerts[-1])
        msg["Subject"] = incident_subject(inc, lang)
        text = incident_text(inc, catalog, lang, n.key)
    elif len(n.alerts) == 1:
        event = n.alerts[0]
        msg["Subject"] = email_subject(event, catalog, lang)
        text = email_text(event, catalog, lang, n.key)
    else:
        msg["Subject"] = group_subject(n, catalog, lang)
        text = group_text(n, catalog, lang)
    msg["From"] = sender
    msg["To"] = sub.target
    msg["Date"] = format_datetime(datetime.fromtimestamp(now_ms / 1000, tz=VN_TZ))
    msg["Message-ID"] = f"<{n.key.replace(':', '.')}@controlroom>"
    msg[EMAIL_IDEMPOTENCY_HEADER] = n.key
    msg[EVENT_HEADER] = n.status if len(n.alerts) > 1 else event_name(n.alerts[0])
    msg["Content-Language"] = lang
    msg.set_content(text, charset="utf-8")
    return msg
