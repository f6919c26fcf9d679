"""Subscribing to incidents (issue 13): the `kinds` field, which incident events notify whom, the same grouping
path (an incident is its own group), per-event idempotency keys, the JSON / Alertmanager / e-mail formats and the
delivery records. Plain data: no broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from controlroom.alerts.subscriptions import (
    INCIDENT_EVENTS,
    SubscriptionError,
    group_labels,
    matches,
    parse_subscription,
    recipients,
    subscription_to_doc,
)
from controlroom.catalog import Catalog
from controlroom.schema import (
    INCIDENT_EVENTS as ALL_INCIDENT_EVENTS,
)
from controlroom.schema import (
    INCIDENTS_TOPIC,
    IncidentMember,
    alert_message,
    control_message,
    incident_message,
)
from controlroom.settings import Settings
from notify.formats import alertmanager_payload, build_email, event_key, event_name, webhook_body
from notify.grouping import GATHER_MS, Dispatcher, Job
from notify.service import Notifier

T = 1_795_687_200_000  # 2026-11-26T10:00:00Z = 17:00 in Hà Nội
IID = "0123456789abcdef"
MEMBERS: list[IncidentMember] = [
    {"alert_id": "a" * 16, "rule_id": "water_level_alarm", "feed": "water_level", "province": "46",
     "dims": {"station": "s1"}, "signal": "water_level", "severity": "critical", "state": "firing", "fired_at": T,
     "joined_at": T},
    {"alert_id": "b" * 16, "rule_id": "sar_flood_incidents", "feed": "sar_incidents", "province": "46",
     "dims": {"type": "flood"}, "signal": "rescue_flood", "severity": "warning", "state": "firing", "fired_at": T,
     "joined_at": T},
]


def incident(event: str, seq: int, *, state: str = "open", severity: str = "critical", province: str = "46",
             members: list[IncidentMember] | None = None) -> dict[str, Any]:
    return dict(incident_message(
        incident_id=IID, seq=seq, type_id="flood", type_version=1, scope="province", province=province,
        severity=severity, event=event, state=state, title_vi="Lũ lụt – Thành phố Huế", title_en="Flooding – Hue",
        members=MEMBERS if members is None else members, opened_at_ms=T,
        resolved_at_ms=T + 3_600_000 if state == "resolved" else None, event_at_ms=T + seq * 1000,
        ack={"by": "trực ban", "comment": "đã cử đội"} if state == "acknowledged" else None,
        alert_id=MEMBERS[0]["alert_id"] if event == "alert_joined" else ""))


def alert_event(kind: str = "firing") -> dict[str, Any]:
    e = alert_message(fingerprint_="fp", rule_id="water_level_alarm", rule_version=1, rule_type="threshold",
                      severity="critical", event=kind, state=kind, seq=1, feed="water_level", province="46",
                      dims={}, summary_vi="vi", summary_en="en", value=1.0, evidence={}, starts_at_ms=T,
                      ends_at_ms=None, event_at_ms=T)
    return {**e, "silenced": False}


def sub(catalog: Catalog, **doc: Any) -> Any:
    return parse_subscription({"id": "ops", "name": "ops", "channel": "webhook", "target": "https://x.vn/h",
                               **doc}, catalog)


# --- the `kinds` field ------------------------------------------------------------------------------------------

def test_kinds_default_to_alerts_and_round_trip(catalog: Catalog) -> None:
    assert sub(catalog).kinds == ("alert",)
    both = sub(catalog, kinds=["incident", "alert", "incident"])
    assert both.kinds == ("alert", "incident")  # canonical order, once each
    assert subscription_to_doc(both)["kinds"] == ["alert", "incident"]
    assert parse_subscription(subscription_to_doc(both), catalog) == both
    assert sub(catalog, kinds=["incident"]).kinds == ("incident",)


@pytest.mark.parametrize(("kinds", "message"), [
    ([], "kinds: must be a non-empty list among alert, incident"),
    ("incident", "kinds: must be a non-empty list"),
    (["alert", "storm"], "kinds[1]: unknown kind 'storm'"),
    ([3], "kinds[0]: unknown kind 3"),
])
def test_kinds_errors_name_the_field(kinds: Any, message: str, catalog: Catalog) -> None:
    with pytest.raises(SubscriptionError) as info:
        sub(catalog, kinds=kinds)
    assert str(info.value).startswith(message), str(info.value)


# --- who hears of what ------------------------------------------------------------------------------------------

def test_which_incident_events_notify(catalog: Catalog) -> None:
    alerts_only, incidents_only = sub(catalog), sub(catalog, id="inc", kinds=["incident"])
    both = sub(catalog, id="both", kinds=["alert", "incident"])
    assert INCIDENT_EVENTS == {"opened", "acknowledged", "resolved"} < set(ALL_INCIDENT_EVENTS)
    for kind in ALL_INCIDENT_EVENTS:
        e = incident(kind, 1)
        assert matches(incidents_only, e, catalog) is (kind in INCIDENT_EVENTS), kind
        assert matches(both, e, catalog) is (kind in INCIDENT_EVENTS), kind
        assert not matches(alerts_only, e, catalog)
    assert matches(alerts_only, alert_event(), catalog) and matches(both, alert_event(), catalog)
    assert not matches(incidents_only, alert_event(), catalog)
    assert not matches(sub(catalog, kinds=["incident"], tier="escalation"), incident("opened", 1), catalog)
    assert not matches(sub(catalog, kinds=["incident"], enabled=False), incident("opened", 1), catalog)
    assert [s.id for s in recipients([alerts_only, incidents_only, both], incident("opened", 1), catalog)] == [
        "both", "inc"]


def test_filters_apply_to_the_incident_and_its_members(catalog: Catalog) -> None:
    def hears(**filters: Any) -> bool:
        return matches(sub(catalog, kinds=["incident"], filters=filters), incident("opened", 1), catalog)

    assert hears(provinces=["46"]) and not hears(provinces=["01"])
    assert hears(min_severity="critical") and not matches(
        sub(catalog, kinds=["incident"], filters={"min_severity": "critical"}),
        incident("opened", 1, severity="warning"), catalog)
    assert hears(feeds=["sar_incidents"]) and not hears(feeds=["hotline_calls"])  # any member's feed
    assert hears(categories=[catalog.feeds["water_level"].category])
    assert not hears(categories=["socio_economic"])


def test_an_incident_is_its_own_group_with_keys_per_event(catalog: Catalog) -> None:
    s = sub(catalog, kinds=["alert", "incident"], group_by=[], group_wait_s=5, group_interval_s=60)
    opened, acked = incident("opened", 1), incident("acknowledged", 4, state="acknowledged")
    assert group_labels(s, opened, catalog) == {"incident_id": IID}
    assert event_key(opened, s) == f"incident-{IID}:1:ops"
    assert event_key(alert_event(), s) == f"{alert_event()['alert_id']}:1:ops"
    tp_i, tp_a = TopicPartition(INCIDENTS_TOPIC, 0), TopicPartition("alerts", 0)
    d = Dispatcher()
    for job in (Job(event_key(opened, s), opened, s, tp_i, 10), Job(event_key(acked, s), acked, s, tp_i, 11)):
        assert d.add(job, group_labels(s, job.event, catalog), T)
    alert_job = Job(event_key(alert_event(), s), alert_event(), s, tp_a, 3)  # an alert: its own group ([] = all)
    assert d.add(alert_job, group_labels(s, alert_job.event, catalog), T)
    assert d.holding() == {tp_i: 10, tp_a: 3}
    assert d.due(T + 4_000) == []  # gathering for group_wait_s
    [first, other] = sorted(d.due(T + 5_000), key=lambda n: not n.incident)
    assert first.incident and not other.incident
    assert [j.key for j in first.jobs] == [f"incident-{IID}:1:ops", f"incident-{IID}:4:ops"]
    assert first.alerts == [acked] and first.delivered_ids == {IID}  # not the member alert id it carries
    assert first.key.startswith("g-") and first.key.endswith(":2:ops")
    d.done(first, T + 6_000, finished=True)
    d.done(other, T + 6_000, finished=True)
    assert d.holding() == {}
    resolved = incident("resolved", 7, state="resolved")
    d.add(Job(event_key(resolved, s), resolved, s, tp_i, 12), group_labels(s, resolved, catalog), T + 70_000)
    assert d.due(T + 70_000) == []  # idle longer than group_interval_s: gathers what came with it first
    [last] = d.due(T + 70_000 + GATHER_MS)
    assert last.key == f"incident-{IID}:7:ops" and last.status == "resolved"
    d.done(last, T + 72_000, finished=True)
    assert (s.id, f'{{incident_id="{IID}"}}') not in d.groups  # a resolved incident leaves, once notified


# --- formats --------------------------------------------------------------------------------------------------

def test_json_body_and_header(catalog: Catalog) -> None:
    s = sub(catalog, kinds=["incident"])
    acked = incident("acknowledged", 4, state="acknowledged")
    job = Job(event_key(acked, s), acked, s, ("incidents", 0), 1)
    from notify.grouping import Notification
    n = Notification(s, f'{{incident_id="{IID}"}}', {"incident_id": IID}, [acked], [job])  # type: ignore[list-item]
    body = orjson.loads(webhook_body(n, catalog))
    assert body == {"kind": "incident", "idempotency_key": f"incident-{IID}:4:ops", "subscription_id": "ops",
                    "group": {"key": f'{{incident_id="{IID}"}}', "labels": {"incident_id": IID}},
                    "status": "firing",
                    "delivers": [{"idempotency_key": f"incident-{IID}:4:ops", "incident_id": IID, "seq": 4,
                                  "event": "acknowledged"}],
                    "incident": acked}
    assert event_name(acked) == "incident.acknowledged" and event_name(alert_event()) == "firing"  # type: ignore[arg-type]

    am = alertmanager_payload(n, catalog)
    [a] = am["alerts"]
    assert am["groupLabels"] == {"incident_id": IID} and am["status"] == "firing"
    assert a["labels"] == {"alertname": "incident", "incident_type": "flood", "severity": "critical",
                           "province": "46", "incident_id": IID, "kind": "incident"}
    assert (a["annotations"]["summary"], a["annotations"]["members"]) == ("Flooding – Hue", f"{'a' * 16},{'b' * 16}")
    assert a["endsAt"] == "0001-01-01T00:00:00Z" and a["fingerprint"] == IID
    over = incident("resolved", 7, state="resolved")
    n2 = Notification(s, n.group_key, n.labels, [over], [Job(event_key(over, s), over, s, ("incidents", 0), 2)])  # type: ignore[list-item]
    [r] = alertmanager_payload(n2, catalog)["alerts"]
    assert (r["status"], r["endsAt"]) == ("resolved", "2026-11-26T11:00:00Z")


def test_incident_emails_in_both_languages(catalog: Catalog) -> None:
    from notify.grouping import Notification

    for lang, subject, lines in (
        ("vi", "[Khẩn cấp] SỰ CỐ ĐÃ TIẾP NHẬN: Lũ lụt – Thành phố Huế (2 cảnh báo)",
         ["Loại: Lũ lụt (flood)", "Trạng thái: đã tiếp nhận", "Tỉnh/thành: Thành phố Huế (46)",
          "Mở lúc: 2026-11-26 17:00:00 (giờ Việt Nam, UTC+7)", "Tiếp nhận bởi: trực ban – đã cử đội",
          "Cảnh báo thành phần: 2"]),
        ("en", "[Critical] INCIDENT ACKNOWLEDGED: Flooding – Hue (2 alerts)",
         ["Type: Flooding (flood)", "State: acknowledged", "Province: Hue (46)", "Member alerts: 2"]),
    ):
        s = parse_subscription({"id": "mail", "name": "m", "channel": "email", "target": "duty@example.gov.vn",
                                "language": lang, "kinds": ["incident"]}, catalog)
        acked = incident("acknowledged", 4, state="acknowledged")
        n = Notification(s, "k", {"incident_id": IID}, [acked],  # type: ignore[list-item]
                         [Job(event_key(acked, s), acked, s, ("incidents", 0), 1)])  # type: ignore[arg-type]
        msg = build_email(n, catalog, sender="cr@example.vn", now_ms=T)
        assert msg["Subject"] == subject
        assert msg["X-Idempotency-Key"] == f"incident-{IID}:4:mail"
        assert msg["X-ControlRoom-Event"] == "incident.acknowledged"
        text = msg.get_content()
        for line in lines:
            assert line in text, (line, text)
        assert f"{'a' * 16}" in text and f"{'b' * 16}" in text  # each member alert


# --- the service: both topics, delivery records -------------------------------------------------------------

@dataclass
class Rec:
    offset: int
    value: bytes


def test_the_service_plans_incident_events_and_records_them(catalog: Catalog) -> None:
    n = Notifier(Settings(notify_signing_key="k"), catalog, channels={})  # type: ignore[arg-type]
    for sid, kinds in (("alerts-only", ["alert"]), ("inc", ["incident"])):
        n.apply_control(orjson.dumps(control_message("subscription.put", by="t", at_ms=0, subscription={
            "id": sid, "name": sid, "channel": "webhook", "target": f"http://x.vn/{sid}", "kinds": kinds})))
    tp_i, tp_a = TopicPartition(INCIDENTS_TOPIC, 0), TopicPartition("alerts", 0)
    jobs = n.plan({tp_i: [Rec(0, orjson.dumps(incident("opened", 1))),
                          Rec(1, orjson.dumps(incident("alert_joined", 2))), Rec(2, b"{}")],
                   tp_a: [Rec(0, orjson.dumps(alert_event()))]})
    assert [(j.key, j.sub.id, j.tp, j.offset) for j in jobs] == [
        (f"incident-{IID}:1:inc", "inc", tp_i, 0),
        (f"{alert_event()['alert_id']}:1:alerts-only", "alerts-only", tp_a, 0)]
    assert n.stats.malformed == 1
    n.apply_delivery(orjson.dumps({"idempotency_key": f"incident-{IID}:1:inc", "status": "delivered", "attempt": 1}))
    assert n.plan({tp_i: [Rec(0, orjson.dumps(incident("opened", 1)))]}) == []  # finished: skipped
    assert n.stats.skipped == 1

    records: list[dict[str, Any]] = []

    async def capture(record: Any) -> None:
        records.append(record)

    n._publish = capture  # type: ignore[method-assign]
    asyncio.run(n._record(jobs[0], attempt=1, status="delivered", http_status=200, error="", at_ms=T,
                          duration_ms=1.0, delivery_id="d1"))
    [rec] = records
    assert (rec["idempotency_key"], rec["alert_id"], rec["seq"], rec["event"], rec["subscription_id"]) == (
        f"incident-{IID}:1:inc", IID, 1, "incident.opened", "inc")
