"""Subscription documents: validation with field paths, round trip, and which events notify whom."""

from __future__ import annotations

from typing import Any

import pytest

from controlroom.alerts.subscriptions import (
    Filters,
    Subscription,
    SubscriptionError,
    matches,
    new_subscription_id,
    parse_subscription,
    recipients,
    subscription_to_doc,
)
from controlroom.catalog import Catalog
from controlroom.schema import alert_message, fingerprint


def webhook(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "ops-hn", "name": "Hà Nội duty desk", "channel": "webhook",
                           "target": "https://hooks.example.vn/cr?token=abc"}
    doc.update(over)
    return doc


def event(kind: str = "firing", severity: str = "warning", feed: str = "water_level", province: str = "01",
          silenced: bool = False, seq: int = 1) -> dict[str, Any]:
    fp = fingerprint("r1", feed, province, "")
    e = alert_message(fingerprint_=fp, rule_id="r1", rule_version=1, rule_type="threshold", severity=severity,
                      event=kind, state=kind, seq=seq, feed=feed, province=province, dims={}, summary_vi="vi",
                      summary_en="en", value=1.0, evidence={}, starts_at_ms=1, ends_at_ms=None, event_at_ms=2)
    e["silenced"] = silenced
    return e


def test_defaults_and_round_trip(catalog: Catalog) -> None:
    sub = parse_subscription(webhook(), catalog)
    assert sub == Subscription(id="ops-hn", name="Hà Nội duty desk", channel="webhook",
                               target="https://hooks.example.vn/cr?token=abc", format="json", language="vi",
                               filters=Filters(), tier="primary", enabled=True)
    doc = subscription_to_doc(sub)
    assert doc["filters"] == {"categories": [], "feeds": [], "provinces": [], "min_severity": "info"}
    assert parse_subscription(doc, catalog) == sub
    mail = parse_subscription({"name": "m", "channel": "email", "target": "duty@example.gov.vn", "language": "en",
                               "tier": "escalation", "enabled": False,
                               "filters": {"categories": ["socio_economic"], "provinces": ["79", "00"],
                                           "min_severity": "critical"}}, catalog)
    assert mail.id.startswith("sub-") and len(mail.id) == 16
    assert (mail.language, mail.tier, mail.enabled, mail.filters.provinces) == ("en", "escalation", False, ("79", "00"))
    assert parse_subscription(subscription_to_doc(mail), catalog) == mail
    assert new_subscription_id() != new_subscription_id()


@pytest.mark.parametrize(("doc", "message"), [
    ([], "subscription: must be a JSON object"),
    (webhook(id="Bad Id"), "id: "),
    (webhook(id="x" * 65), "id: "),
    (webhook(name=""), "name: must be a non-empty string"),
    (webhook(channel="sms"), "channel: must be one of webhook, email"),
    (webhook(target="ftp://x.vn/a"), "target: must be an http:// or https:// URL"),
    (webhook(target="http://"), "target: must be an http:// or https:// URL"),
    (webhook(target="http://x.vn:99999/"), "target: not a valid URL"),
    (webhook(format="xml"), "format: must be one of json, alertmanager"),
    (webhook(language="en"), "language: only for channel email"),
    (webhook(channel="email", target="not-an-address"), "target: must be an e-mail address"),
    (webhook(channel="email", target="a@b.vn", format="json"), "format: only for channel webhook"),
    (webhook(channel="email", target="a@b.vn", language="fr"), "language: must be one of vi, en"),
    (webhook(tier="boss"), "tier: must be one of primary, escalation"),
    (webhook(enabled="yes"), "enabled: must be true or false"),
    (webhook(colour="red"), "colour: unknown field"),
    (webhook(filters=[]), "filters: must be an object"),
    (webhook(filters={"feeds": ["x"]}), "filters.feeds[0]: unknown feed 'x'"),
    (webhook(filters={"feeds": "water_level"}), "filters.feeds: must be a list"),
    (webhook(filters={"categories": ["socio_economic", "nope"]}), "filters.categories[1]: unknown category 'nope'"),
    (webhook(filters={"provinces": ["01", "99"]}), "filters.provinces[1]: unknown province '99'"),
    (webhook(filters={"min_severity": "fatal"}), "filters.min_severity: must be one of info, warning, critical"),
    (webhook(filters={"severity": "info"}), "filters.severity: unknown field"),
])
def test_errors_start_with_the_field_path(doc: Any, message: str, catalog: Catalog) -> None:
    with pytest.raises(SubscriptionError) as info:
        parse_subscription(doc, catalog)
    assert str(info.value).startswith(message), str(info.value)


def test_tiers_pending_and_silenced(catalog: Catalog) -> None:
    primary = parse_subscription(webhook(), catalog)
    escalation = parse_subscription(webhook(id="boss", tier="escalation"), catalog)
    for kind in ("firing", "repeat", "resolved", "acknowledged"):
        assert matches(primary, event(kind), catalog) and not matches(escalation, event(kind), catalog)
    assert matches(escalation, event("escalated"), catalog) and not matches(primary, event("escalated"), catalog)
    for sub in (primary, escalation):
        assert not matches(sub, event("pending"), catalog)
        assert not matches(sub, event("firing", silenced=True), catalog)
        assert not matches(sub, event("escalated", silenced=True), catalog)
        inhibited = {**event("firing"), "inhibited_by": "0123456789abcdef"}  # muted by another firing alert
        assert not matches(sub, inhibited, catalog)
    assert matches(primary, {**event("firing"), "inhibited_by": None}, catalog)
    off = parse_subscription(webhook(enabled=False), catalog)
    assert not matches(off, event(), catalog)


def test_filters(catalog: Catalog) -> None:
    water = catalog.feeds["water_level"]
    other = next(f for f in catalog.feeds.values() if f.category != water.category and f.scope == "provincial")
    sub = parse_subscription(webhook(filters={"min_severity": "warning", "provinces": ["01"]}), catalog)
    assert not matches(sub, event(severity="info"), catalog)
    assert matches(sub, event(severity="warning"), catalog) and matches(sub, event(severity="critical"), catalog)
    assert not matches(sub, event(province="79"), catalog)
    by_cat = parse_subscription(webhook(filters={"categories": [water.category]}), catalog)
    assert matches(by_cat, event(), catalog) and not matches(by_cat, event(feed=other.id), catalog)
    by_feed = parse_subscription(webhook(filters={"feeds": [other.id]}), catalog)
    assert matches(by_feed, event(feed=other.id), catalog) and not matches(by_feed, event(), catalog)
    unknown = event(feed="gone")
    assert matches(sub, unknown, catalog) and not matches(by_cat, unknown, catalog)
    assert not matches(sub, event(severity="fatal"), catalog)
    subs = [parse_subscription(webhook(id=i), catalog) for i in ("zz", "aa", "mm")]
    assert [s.id for s in recipients([*subs, by_feed], event(), catalog)] == ["aa", "mm", "zz"]
