"""Signing, webhook bodies (json, Alertmanager v4), e-mail templates (vi, en), backoff and delivery records."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import pytest

from controlroom.alerts.signing import sign, subscription_secret, verify_signature
from controlroom.alerts.subscriptions import Subscription, parse_subscription
from controlroom.catalog import Catalog
from controlroom.schema import DeliveryRecord, alert_message, delivery_message, fingerprint
from notify.formats import (
    alertmanager_payload,
    am_fingerprint,
    am_group_key,
    am_label_name,
    build_email,
    email_subject,
    email_text,
    event_key,
    go_time,
    idempotency_key,
    webhook_body,
)
from notify.grouping import Job, Notification
from notify.policy import (
    DEAD_LETTER,
    DELIVERED,
    RETRY,
    Outcome,
    http_outcome,
    redact_target,
    schedule,
    status_after,
)
from sinks.rows import DELIVERIES, SCHEMAS

T = 1_795_687_200_000  # 2026-11-26T10:00:00Z = 17:00 in Hà Nội


def event(kind: str = "firing", **over: Any) -> dict[str, Any]:
    fp = fingerprint("water_level_alarm", "water_level", "01", "station=s1")
    e = alert_message(fingerprint_=fp, rule_id="water_level_alarm", rule_version=2, rule_type="threshold",
                      severity="critical", event=kind, state=kind, seq=7, feed="water_level", province="01",
                      dims={"station": "s1"}, summary_vi="Mực nước vượt báo động III",
                      summary_en="Water level above alarm level III", value=812.5,
                      evidence={"threshold": 800.0, "level": "III", "window": {"count": 3}},
                      starts_at_ms=T, ends_at_ms=T + 60_000 if kind == "resolved" else None, event_at_ms=T + 1000,
                      link="https://cr.example.vn/alerts/x")
    e["silenced"] = False
    e.update(over)
    return e


def one(e: Any, sub: Subscription) -> Notification:
    """A notification of one event, as the dispatcher makes it for a group of one alert."""
    job = Job(event_key(e, sub), e, sub, ("alerts", 0), 3)
    return Notification(sub, '{alert_id="x"}', {"alert_id": "x"}, [e], [job])


def test_signature_is_hmac_of_the_exact_body() -> None:
    secret = subscription_secret("master", "ops-hn")
    assert secret == hmac.new(b"master", b"ops-hn", hashlib.sha256).hexdigest()
    assert secret != subscription_secret("master", "ops-hcm") != subscription_secret("other", "ops-hn")
    body = b'{"a":1}'
    header = sign(secret, body)
    assert header == "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert verify_signature(secret, body, header)
    assert not verify_signature(secret, body + b" ", header)
    assert not verify_signature(subscription_secret("master", "ops-hcm"), body, header)
    assert not verify_signature(secret, body, None) and not verify_signature(secret, body, header[7:])


def test_json_body(catalog: Catalog) -> None:
    sub = parse_subscription({"id": "ops-hn", "name": "n", "channel": "webhook", "target": "http://x.vn/"}, catalog)
    e = event()
    doc = orjson.loads(webhook_body(one(e, sub), catalog))
    key = f"{e['alert_id']}:7:ops-hn"
    assert doc == {"idempotency_key": key, "subscription_id": "ops-hn",
                   "group": {"key": '{alert_id="x"}', "labels": {"alert_id": "x"}}, "status": "firing",
                   "delivers": [{"idempotency_key": key, "alert_id": e["alert_id"], "seq": 7, "event": "firing"}],
                   "alerts": [e]}
    assert idempotency_key("a", 1, "s") == "a:1:s"


def test_alertmanager_v4_shape(catalog: Catalog) -> None:
    sub = parse_subscription({"id": "am", "name": "n", "channel": "webhook", "target": "http://x.vn/",
                              "format": "alertmanager"}, catalog)
    e = event()
    feed = catalog.feeds["water_level"]
    n = Notification(sub, "k", {"rule": "water_level_alarm", "feed": "water_level"}, [e],
                     [Job(event_key(e, sub), e, sub, ("alerts", 0), 3)])
    p = alertmanager_payload(n, catalog, "https://cr.example.vn")
    labels = {"station": "s1", "alertname": "water_level_alarm", "severity": "critical", "feed": "water_level",
              "province": "01", "rule_type": "threshold", "category": feed.category, "agency": "hydromet",
              "alert_id": e["alert_id"]}
    assert p["version"] == "4" and p["status"] == "firing" and p["receiver"] == "am"
    assert p["truncatedAlerts"] == 0 and p["externalURL"] == "https://cr.example.vn"
    assert p["groupLabels"] == {"alertname": "water_level_alarm", "feed": "water_level"}
    assert p["groupKey"] == '{}:{alertname="water_level_alarm", feed="water_level"}'
    [a] = p["alerts"]
    assert a["labels"] == labels == p["commonLabels"]
    assert a["annotations"]["summary"] == "Water level above alarm level III"
    assert a["annotations"]["summary_vi"] == "Mực nước vượt báo động III"
    assert a["annotations"] == p["commonAnnotations"]
    # times as Go writes them (Alertmanager's own webhook): no trailing zeros after the seconds
    assert (a["status"], a["startsAt"], a["endsAt"]) == ("firing", "2026-11-26T10:00:00Z", "0001-01-01T00:00:00Z")
    assert a["generatorURL"] == e["link"] and a["fingerprint"] == am_fingerprint(labels)
    resolved = alertmanager_payload(one(event("resolved"), sub), catalog)
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["endsAt"] == "2026-11-26T10:01:00Z"
    assert alertmanager_payload(one(event("acknowledged"), sub), catalog)["status"] == "firing"
    assert orjson.loads(webhook_body(n, catalog)) == alertmanager_payload(n, catalog)
    # a group of two: commonLabels keep only what both share, the group is firing while one is
    two = Notification(sub, "k", {"rule": "water_level_alarm"}, [e, {**event("resolved"), "alert_id": "c" * 16}],
                       [Job("k1", e, sub, ("alerts", 0), 1)])
    p2 = alertmanager_payload(two, catalog)
    assert p2["status"] == "firing" and len(p2["alerts"]) == 2
    assert "alert_id" not in p2["commonLabels"] and p2["commonLabels"]["alertname"] == "water_level_alarm"


def test_alertmanager_fingerprint_time_and_group_key() -> None:
    """Alertmanager 0.25 answered these (labels POSTed to /api/v2/alerts, read back from its webhook)."""
    assert am_fingerprint({"alert_id": "abc", "alertname": "r1", "feed": "wl", "province": "01"}) == "94d26779cfddca9f"
    assert am_fingerprint({}) == "cbf29ce484222325"  # FNV-1a's offset: the empty label set
    assert am_fingerprint({"a": "b"}) != am_fingerprint({"b": "a"}) != am_fingerprint({"ab": ""})
    assert (go_time(T), go_time(T + 123), go_time(T + 120), go_time(T + 5)) == (
        "2026-11-26T10:00:00Z", "2026-11-26T10:00:00.123Z", "2026-11-26T10:00:00.12Z", "2026-11-26T10:00:00.005Z")
    assert am_group_key({"feed": "water_level", "alertname": "x"}) == '{}:{alertname="x", feed="water_level"}'
    assert (am_label_name("station"), am_label_name("service-type"), am_label_name("3g")) == (
        "station", "service_type", "_3g")


@pytest.mark.parametrize(("lang", "subject", "lines"), [
    ("vi", "[Khẩn cấp] ĐANG BÁO ĐỘNG: Mực nước vượt báo động III – Thành phố Hà Nội",
     ["Mức độ: Khẩn cấp", "Tỉnh/thành: Thành phố Hà Nội (01)", "Phân tách: station=s1",
      "  - threshold: 800", "  - level: III", '  - window: {"count":3}',
      "Bắt đầu: 2026-11-26 17:00:00 (giờ Việt Nam, UTC+7)", "Kết thúc: —",
      "Chi tiết: https://cr.example.vn/alerts/x"]),
    ("en", "[Critical] FIRING: Water level above alarm level III – Hanoi",
     ["Severity: Critical", "Province: Hanoi (01)", "Event: FIRING (#7)",
      "Started: 2026-11-26 17:00:00 (Vietnam time, UTC+7)", "Event time: 2026-11-26 17:00:01 (Vietnam time, UTC+7)"]),
])
def test_email(lang: str, subject: str, lines: list[str], catalog: Catalog) -> None:
    sub = parse_subscription({"id": "mail", "name": "n", "channel": "email", "target": "duty@example.gov.vn",
                              "language": lang}, catalog)
    e = event()
    msg = build_email(one(e, sub), catalog, sender="cr@example.gov.vn", now_ms=T)
    assert msg["Subject"] == subject
    assert (msg["To"], msg["From"]) == ("duty@example.gov.vn", "cr@example.gov.vn")
    assert msg["X-Idempotency-Key"] == f"{e['alert_id']}:7:mail"
    body = msg.get_content()
    unit = catalog.feeds["water_level"].unit
    assert (f"Giá trị: 812.5 {unit}" if lang == "vi" else f"Value: 812.5 {unit}") in body.splitlines()
    for line in lines:
        assert line in body.splitlines(), line
    assert f"{e['alert_id']}:7:mail" in body
    acked = event("acknowledged", ack={"by": "an.nguyen", "comment": "đang xử lý"})
    assert "Tiếp nhận bởi: an.nguyen – đang xử lý" in email_text(acked, catalog, "vi", "k")
    national = event(province="00", feed="gold_price", dims={})
    assert email_subject(national, catalog, "vi").endswith("– Toàn quốc")


def test_backoff_and_status() -> None:
    assert schedule(5, 0.5, 30.0) == [0.5, 1.0, 2.0, 4.0]
    assert schedule(8, 1.0, 5.0) == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]
    assert schedule(1, 1.0, 5.0) == []
    assert http_outcome(204).ok
    assert http_outcome(404).permanent and http_outcome(400).permanent and http_outcome(302).permanent
    for code in (408, 429, 500, 503):
        assert not http_outcome(code).ok and not http_outcome(code).permanent
    assert status_after(http_outcome(200), 5, 5) == DELIVERED
    assert status_after(http_outcome(500), 4, 5) == RETRY
    assert status_after(http_outcome(500), 5, 5) == DEAD_LETTER
    assert status_after(http_outcome(410), 1, 5) == DEAD_LETTER
    assert status_after(Outcome(False, 0, "timeout"), 1, 5) == RETRY


def test_delivery_record_has_exactly_the_table_columns() -> None:
    e = event()
    outcome = http_outcome(503, "Service Unavailable")
    r = delivery_message(key="k", event=e, subscription_id="s", channel="webhook",
                         target=redact_target("https://u:pw@hooks.example.vn:8443/p?token=zzz"), attempt=2,
                         status=RETRY, http_status=outcome.status_code, error=outcome.error, attempted_ms=T,
                         duration_ms=12.3456)
    assert tuple(r) == tuple(SCHEMAS[DELIVERIES].names) == tuple(DeliveryRecord.__annotations__)
    assert r["target"] == "https://hooks.example.vn:8443/p?…"
    assert (r["http_status"], r["error"]) == (503, "HTTP 503 Service Unavailable")
    assert (r["seq"], r["duration_ms"]) == (7, 12.346)
    assert redact_target("duty@example.gov.vn") == "duty@example.gov.vn"
