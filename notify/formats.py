"""What a notification looks like on the wire: webhook bodies (json, Alertmanager v4) and e-mails (vi, en).

Pure code: an alert event (controlroom.schema.alert_message plus `silenced`), a subscription and the
catalog in; bytes, headers or an EmailMessage out. Times in e-mails are shown in Asia/Ho_Chi_Minh.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from controlroom.alerts.subscriptions import Subscription
from controlroom.catalog import NATIONAL, Catalog
from controlroom.schema import AlertEvent, ms_to_iso

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
AM_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "no end yet"
EVENT_HEADER = "X-ControlRoom-Event"
IDEMPOTENCY_HEADER = "Idempotency-Key"
EMAIL_IDEMPOTENCY_HEADER = "X-Idempotency-Key"
MAX_EVIDENCE_LINES = 8
MAX_SUBJECT = 200


def idempotency_key(alert_id: str, seq: int, subscription_id: str) -> str:
    """One notification = one alert event to one subscription; a receiver drops a key it has seen."""
    return f"{alert_id}:{seq}:{subscription_id}"


def event_key(event: AlertEvent, sub: Subscription) -> str:
    return idempotency_key(str(event["alert_id"]), int(event["seq"]), sub.id)


# --- webhooks ----------------------------------------------------------------------------------------

def alertmanager_payload(event: AlertEvent, sub: Subscription, external_url: str = "") -> dict[str, Any]:
    """The Alertmanager webhook v4 payload for one event: one alert, its own group."""
    status = "resolved" if event["event"] == "resolved" else "firing"
    dims = event.get("dims") or {}
    labels = {**{str(k): str(v) for k, v in dims.items()},
              "alertname": str(event["rule_id"]), "severity": str(event["severity"]), "feed": str(event["feed"]),
              "province": str(event["province"]), "rule_type": str(event["rule_type"]),
              "alert_id": str(event["alert_id"])}
    annotations = {"summary": str(event["summary_en"]), "summary_vi": str(event["summary_vi"]),
                   "summary_en": str(event["summary_en"]), "event": str(event["event"]),
                   "seq": str(event["seq"])}
    ends_at = event.get("ends_at")
    alert = {"status": status, "labels": labels, "annotations": annotations,
             "startsAt": ms_to_iso(int(event["starts_at"])),
             "endsAt": ms_to_iso(int(ends_at)) if ends_at is not None else AM_ZERO_TIME,
             "generatorURL": str(event.get("link") or ""), "fingerprint": str(event["alert_id"])}
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{labels["alertname"]}", alert_id="{labels["alert_id"]}"}}',
            "status": status, "receiver": sub.id, "alerts": [alert],
            "groupLabels": {"alertname": labels["alertname"], "alert_id": labels["alert_id"]},
            "commonLabels": labels, "commonAnnotations": annotations, "externalURL": external_url,
            "truncatedAlerts": 0}


def webhook_body(event: AlertEvent, sub: Subscription, external_url: str = "") -> bytes:
    """The exact bytes POSTed (and signed) for this subscription's format."""
    if sub.format == "alertmanager":
        return orjson.dumps(alertmanager_payload(event, sub, external_url))
    return orjson.dumps({"idempotency_key": event_key(event, sub), "subscription_id": sub.id, "alert": dict(event)})


# --- e-mail --------------------------------------------------------------------------------------------

LABELS: dict[str, dict[str, str]] = {
    "vi": {"event": "Sự kiện", "severity": "Mức độ", "summary": "Nội dung", "feed": "Nguồn dữ liệu",
           "province": "Tỉnh/thành", "dims": "Phân tách", "value": "Giá trị", "evidence": "Căn cứ",
           "starts": "Bắt đầu", "ends": "Kết thúc", "at": "Thời điểm sự kiện", "ack": "Tiếp nhận bởi",
           "link": "Chi tiết", "key": "Mã chống trùng lặp", "national": "Toàn quốc", "tz": "giờ Việt Nam",
           "none": "—", "footer": "Thư tự động từ Control Room, vui lòng không trả lời."},
    "en": {"event": "Event", "severity": "Severity", "summary": "Summary", "feed": "Feed",
           "province": "Province", "dims": "Dimensions", "value": "Value", "evidence": "Evidence",
           "starts": "Started", "ends": "Ended", "at": "Event time", "ack": "Acknowledged by",
           "link": "Details", "key": "Idempotency key", "national": "National", "tz": "Vietnam time",
           "none": "—", "footer": "Automatic message from Control Room; please do not reply."},
}
EVENT_NAMES = {
    "vi": {"pending": "CHỜ XÁC NHẬN", "firing": "ĐANG BÁO ĐỘNG", "resolved": "ĐÃ KẾT THÚC", "repeat": "NHẮC LẠI",
           "acknowledged": "ĐÃ TIẾP NHẬN", "escalated": "LEO THANG"},
    "en": {"pending": "PENDING", "firing": "FIRING", "resolved": "RESOLVED", "repeat": "REMINDER",
           "acknowledged": "ACKNOWLEDGED", "escalated": "ESCALATED"},
}
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
    ack = event.get("ack")
    if isinstance(ack, dict) and ack.get("by"):
        comment = f" – {_one_line(str(ack['comment']), 200)}" if ack.get("comment") else ""
        lines.append(f"{lab['ack']}: {ack['by']}{comment}")
    if event.get("link"):
        lines.append(f"{lab['link']}: {event['link']}")
    lines += [f"{lab['key']}: {key}", "", "-- ", lab["footer"]]
    return "\n".join(lines) + "\n"


def build_email(event: AlertEvent, sub: Subscription, catalog: Catalog, *, sender: str,
                now_ms: int) -> EmailMessage:
    key = event_key(event, sub)
    msg = EmailMessage()
    msg["Subject"] = email_subject(event, catalog, sub.language)
    msg["From"] = sender
    msg["To"] = sub.target
    msg["Date"] = format_datetime(datetime.fromtimestamp(now_ms / 1000, tz=VN_TZ))
    msg["Message-ID"] = f"<{event['alert_id']}.{event['seq']}.{sub.id}@controlroom>"
    msg[EMAIL_IDEMPOTENCY_HEADER] = key
    msg[EVENT_HEADER] = str(event["event"])
    msg["Content-Language"] = sub.language
    msg.set_content(email_text(event, catalog, sub.language, key), charset="utf-8")
    return msg
