"""Grouping as Alertmanager does it: group_by, group_wait, group_interval, repeat_interval, and the offsets a
waiting group holds back. Pure: the dispatcher gets the time from the test."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlroom.alerts.subscriptions import (
    Subscription,
    SubscriptionError,
    group_labels,
    parse_subscription,
    subscription_to_doc,
)
from controlroom.catalog import Catalog
from controlroom.schema import AlertEvent, alert_message, fingerprint
from notify.formats import build_email, event_key, webhook_body
from notify.grouping import GATHER_MS, Dispatcher, Job, Notification

T = 1_795_687_200_000


def ev(province: str, *, kind: str = "firing", seq: int = 1, rule: str = "connection_lost",
       feed: str = "water_level", severity: str = "warning", station: str = "s1") -> AlertEvent:
    fp = fingerprint(rule, feed, province, f"station={station}")
    return alert_message(fingerprint_=fp, rule_id=rule, rule_version=1, rule_type="staleness", severity=severity,
                         event=kind, state=kind, seq=seq, feed=feed, province=province, dims={"station": station},
                         summary_vi=f"Mất kết nối {province}", summary_en=f"Connection lost {province}", value=900.0,
                         evidence={}, starts_at_ms=T, ends_at_ms=None, event_at_ms=T)


def subscription(catalog: Catalog, **doc: Any) -> Subscription:
    return parse_subscription({"id": "duty", "name": "duty", "channel": "webhook", "target": "http://x.vn/",
                               **doc}, catalog)


def add(d: Dispatcher, sub: Subscription, e: AlertEvent, at: int, offset: int, catalog: Catalog) -> bool:
    return d.add(Job(event_key(e, sub), e, sub, ("alerts", 0), offset), group_labels(sub, e, catalog), at)


def test_a_silent_feed_is_one_notification_not_one_per_series(catalog: Catalog) -> None:
    sub = subscription(catalog)  # defaults: by rule and feed, wait 5 s
    d = Dispatcher()
    provinces = sorted(catalog.provinces)
    stations = [f"s{i}" for i in (1, 2)]
    events = [ev(p, station=s) for p in provinces for s in stations]  # 68 series
    for i, e in enumerate(events):
        assert add(d, sub, e, T + i * 10, i, catalog)
    assert d.due(T + 4_999) == []  # still gathering
    [n] = d.due(T + 5_000)
    assert len(n.alerts) == len(n.jobs) == 68 and n.labels == {"rule": "connection_lost", "feed": "water_level"}
    assert n.status == "firing" and [a["province"] for a in n.alerts] == sorted(a["province"] for a in n.alerts)
    assert d.holding() == {("alerts", 0): 0}  # in flight: nothing may be committed yet
    body = orjson.loads(webhook_body(n, catalog))
    assert len(body["delivers"]) == 68 and body["idempotency_key"] == n.key and n.key.endswith(":68:duty")
    d.done(n, T + 5_100, finished=True)
    assert d.holding() == {} and d.due(T + 10**9) == []


def test_wait_interval_and_resolution(catalog: Catalog) -> None:
    sub = subscription(catalog, group_wait_s=5, group_interval_s=60)
    d = Dispatcher()
    add(d, sub, ev("01"), T, 10, catalog)
    [first] = d.due(T + 5_000)
    d.done(first, T + 5_000, finished=True)
    add(d, sub, ev("79"), T + 6_000, 11, catalog)  # joins the group: waits for the interval, not for a new wait
    assert d.due(T + 64_999) == [] and d.next_due_ms() == T + 65_000
    assert d.holding() == {("alerts", 0): 11}
    [second] = d.due(T + 65_000)
    assert [a["province"] for a in second.alerts] == ["01", "79"] and [j.offset for j in second.jobs] == [11]
    assert second.delivered_ids == {second.alerts[1]["alert_id"]}  # 01 is shown, not delivered again
    d.done(second, T + 65_000, finished=True)
    add(d, sub, ev("01", kind="resolved", seq=2), T + 70_000, 12, catalog)
    add(d, sub, ev("79", kind="resolved", seq=2), T + 70_001, 13, catalog)
    [third] = d.due(T + 125_000)
    assert third.status == "resolved" and len(third.jobs) == 2
    d.done(third, T + 125_000, finished=True)
    assert d.groups == {}  # every alert resolved and notified: the group is gone
    add(d, sub, ev("01", seq=3), T + 200_000, 14, catalog)  # a new group: group_wait again
    assert d.next_due_ms() == T + 205_000


def test_a_stop_puts_the_jobs_back_and_they_keep_holding_the_offsets(catalog: Catalog) -> None:
    sub = subscription(catalog, group_wait_s=0)
    d = Dispatcher()
    add(d, sub, ev("01"), T, 5, catalog)
    [n] = d.due(T)
    d.done(n, T + 10, finished=False)
    assert d.holding() == {("alerts", 0): 5}
    [again] = d.due(T + 20)
    assert again.key == n.key  # the same jobs: the same idempotency key
    assert d.drop_partitions([("alerts", 0)]) == 0  # in flight now, not pending
    d.done(again, T + 30, finished=False)
    assert d.drop_partitions([("alerts", 0)]) == 1 and d.holding() == {}


def test_group_by_each_alert_or_everything(catalog: Catalog) -> None:
    each = subscription(catalog, group_by=["..."], group_wait_s=0)
    d = Dispatcher()
    for i, p in enumerate(("01", "79", "31")):
        add(d, each, ev(p), T, i, catalog)
    assert sorted(len(n.alerts) for n in d.due(T)) == [1, 1, 1]
    everything = subscription(catalog, group_by=[], group_wait_s=0)
    d2 = Dispatcher()
    add(d2, everything, ev("01"), T, 0, catalog)
    add(d2, everything, ev("79", rule="water_level_alarm", severity="critical"), T, 1, catalog)
    [n] = d2.due(T)
    assert len(n.alerts) == 2 and n.labels == {}
    by_province = subscription(catalog, group_by=["province", "severity"], group_wait_s=0)
    assert group_labels(by_province, ev("79"), catalog) == {"province": "79", "severity": "warning"}
    by_agency = subscription(catalog, group_by=["category", "agency"])
    feed = catalog.feeds["water_level"]
    # the agency label is the series' supplier in the registry (controlroom/data/agencies.yaml)
    assert group_labels(by_agency, ev("79"), catalog) == {"category": feed.category, "agency": "hydromet"}


def test_repeat_interval_skips_reminders_sent_too_soon(catalog: Catalog) -> None:
    sub = subscription(catalog, group_wait_s=0, group_interval_s=1, repeat_interval_s=3600)
    d = Dispatcher()
    add(d, sub, ev("01"), T, 0, catalog)
    [n] = d.due(T)
    d.done(n, T, finished=True)
    assert not add(d, sub, ev("01", kind="repeat", seq=2), T + 1_800_000, 1, catalog)  # 30 min: too soon
    assert add(d, sub, ev("01", kind="repeat", seq=3), T + 3_600_000, 2, catalog)  # an hour: sent
    default = subscription(catalog, group_wait_s=0)  # null: the rule's own reminders pass
    d2 = Dispatcher()
    add(d2, default, ev("01"), T, 0, catalog)
    d2.done(d2.due(T)[0], T, finished=True)
    assert add(d2, default, ev("01", kind="repeat", seq=2), T + 1000, 1, catalog)


def test_group_email_summarises_by_province(catalog: Catalog) -> None:
    sub = parse_subscription({"id": "mail", "name": "m", "channel": "email", "target": "duty@example.gov.vn"}, catalog)
    alerts = [ev("79"), ev("01"), ev("01", station="s2", severity="critical", rule="connection_lost")]
    n = Notification(sub, "k", {"rule": "connection_lost", "feed": "water_level"}, alerts,
                     [Job(event_key(a, sub), a, sub, ("alerts", 0), i) for i, a in enumerate(alerts)])
    msg = build_email(n, catalog, sender="cr@example.gov.vn", now_ms=T)
    feed_vi = catalog.feeds["water_level"].name_vi
    assert msg["Subject"] == f"[Khẩn cấp] ĐANG BÁO ĐỘNG: 3 cảnh báo – connection_lost – {feed_vi}"
    lines = msg.get_content().splitlines()
    hanoi = lines.index("Thành phố Hà Nội (01): 2")
    assert lines[hanoi + 1].startswith("  - [Khẩn cấp]")  # worst first
    assert "Thành phố Hồ Chí Minh (79): 1" in lines
    assert msg["X-Idempotency-Key"] == n.key


def test_grouping_fields_are_validated_and_round_trip(catalog: Catalog) -> None:
    sub = subscription(catalog, group_by=["province", "rule"], group_wait_s=0, group_interval_s=30,
                       repeat_interval_s=600)
    assert parse_subscription(subscription_to_doc(sub), catalog) == sub
    for doc, message in [({"group_by": ["station"]}, "group_by[0]: unknown label 'station'"),
                         ({"group_by": "rule"}, "group_by: must be a list"),
                         ({"group_wait_s": -1}, "group_wait_s: must be a number of seconds from 0 to 3600"),
                         ({"group_interval_s": 0}, "group_interval_s: must be a number"),
                         ({"repeat_interval_s": 5}, "repeat_interval_s: must be a number of seconds from 60")]:
        with pytest.raises(SubscriptionError, match=message.replace("[", r"\[").replace("]", r"\]")):
            subscription(catalog, **doc)


def test_a_change_to_an_idle_group_gathers_what_came_with_it(catalog: Catalog) -> None:
    """Three resolves read in two polls 300 ms apart (other partitions) make one notification, GATHER_MS after
    the first; with group_wait_s 0 the subscription asked for no wait at all, and gets none."""
    sub = subscription(catalog, group_wait_s=5, group_interval_s=60)
    d = Dispatcher()
    for i, p in enumerate(("01", "79", "31")):
        add(d, sub, ev(p), T, i, catalog)
    [first] = d.due(T + 5_000)
    d.done(first, T + 5_000, finished=True)
    idle = T + 5_000 + 120_000  # two intervals later
    add(d, sub, ev("01", kind="resolved", seq=2), idle, 3, catalog)
    assert d.due(idle) == [] and d.next_due_ms() == idle + GATHER_MS
    add(d, sub, ev("79", kind="resolved", seq=2), idle + 300, 4, catalog)
    add(d, sub, ev("31", kind="resolved", seq=2), idle + 300, 5, catalog)
    assert d.next_due_ms() == idle + GATHER_MS  # later events do not push it back
    [n] = d.due(idle + GATHER_MS)
    assert n.status == "resolved" and [j.offset for j in n.jobs] == [3, 4, 5]
    eager = subscription(catalog, group_wait_s=0, group_interval_s=60)
    d2 = Dispatcher()
    add(d2, eager, ev("01"), T, 0, catalog)
    d2.done(d2.due(T)[0], T, finished=True)
    add(d2, eager, ev("01", kind="resolved", seq=2), T + 120_000, 1, catalog)
    assert len(d2.due(T + 120_000)) == 1
