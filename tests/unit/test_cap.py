"""CAP 1.2 (issue 13): the mapping table, the thread of an episode (Alert, then Updates referencing it),
every document valid against the OASIS schema and read back by a CAP parser, the Atom feed read by a feed
parser, and the rules' `public` flag. Plain data: no Kafka, no warehouse."""

from __future__ import annotations

import re
from typing import Any

import feedparser
import pytest
from cap_tools.models import Certainty, MsgType, ResponseType, Scope, Severity, Status, Urgency

from controlroom.alerts.cap import (
    CAP_MEDIA_TYPE,
    CAP_SEVERITY,
    CAP_STATE,
    FEED_CATEGORY,
    GEOCODE_PROVINCE,
    CapError,
    FeedEntry,
    alert_cap,
    atom_feed,
    cap_codes,
    cap_time,
    cap_xml,
    thread_start,
)
from controlroom.alerts.rules import RuleError, load_default_rules, parse_rules, public_rule_ids
from controlroom.catalog import Catalog, default_catalog
from controlroom.schema import SEVERITIES, alert_message, fingerprint
from tests.cap_checks import parse_cap, schema_errors, serialise_cap

CAT: Catalog = default_catalog()
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z = 07:00 in Việt Nam
MIN = 60_000
LINK = "http://localhost:3000/d/controlroom-feed-explorer/feed-explorer?var-feed=water_level&var-province=01"


def episode(steps: list[tuple[str, str, str]], *, rule: str = "water_level_alarm", rule_type: str = "threshold",
            feed: str = "water_level", province: str = "01", dims: dict[str, str] | None = None,
            starts: int = T0, first_seq: int = 1) -> list[dict[str, Any]]:
    """The events of one alert episode as the API returns them: (event, state, severity) per step."""
    dims = {"station": "s1"} if dims is None else dims
    fp = fingerprint(rule, feed, province, ",".join(f"{k}={v}" for k, v in sorted(dims.items())))
    out = []
    for i, (event, state, severity) in enumerate(steps):
        e = alert_message(fingerprint_=fp, rule_id=rule, rule_version=2, rule_type=rule_type, severity=severity,
                          event=event, state=state, seq=first_seq + i, feed=feed, province=province, dims=dims,
                          summary_vi="Mực nước Thành phố Hà Nội trạm s1: 1182 cm vượt báo động III (1150 cm)",
                          summary_en="Water level Hanoi s1: 1182 cm above alarm level III (1150 cm)",
                          value=1182.0, evidence={"rule_id": rule, "window": {"max": 1182.0, "start_ms": starts},
                                                  "threshold": {"op": "above", "value": 1150.0, "level": "III"}},
                          starts_at_ms=starts, ends_at_ms=starts + 30 * MIN if state == "resolved" else None,
                          event_at_ms=starts + i * MIN, link=LINK,
                          ack={"by": "trực ban", "comment": "đã cử đội"} if event == "acknowledged" else None)
        out.append(dict(e))
    return out


FIRING_ESCALATED_RESOLVED = [("firing", "firing", "critical"), ("escalated", "firing", "critical"),
                             ("acknowledged", "firing", "critical"), ("resolved", "resolved", "critical")]


# --- the mapping table ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("state", "severity", "expected"), [
    ("firing", "critical", ("Immediate", "Severe", "Observed", "Monitor")),
    ("firing", "warning", ("Immediate", "Moderate", "Observed", "Monitor")),
    ("firing", "info", ("Immediate", "Minor", "Observed", "Monitor")),
    ("pending", "critical", ("Expected", "Severe", "Likely", "Monitor")),
    ("pending", "info", ("Expected", "Minor", "Likely", "Monitor")),
    ("resolved", "critical", ("Past", "Severe", "Observed", "AllClear")),
    ("resolved", "warning", ("Past", "Moderate", "Observed", "AllClear")),
])
def test_mapping_table(state: str, severity: str, expected: tuple[str, str, str, str]) -> None:
    c = cap_codes(state, severity)
    assert (c["urgency"], c["severity"], c["certainty"], c["responseType"]) == expected


def test_mapping_covers_every_state_and_severity_with_values_cap_knows() -> None:
    assert set(CAP_SEVERITY) == set(SEVERITIES) and set(CAP_STATE) == {"pending", "firing", "resolved"}
    assert "Extreme" not in CAP_SEVERITY.values()  # an automatic rule does not claim an extraordinary threat
    for urgency, certainty, response in CAP_STATE.values():
        Urgency(urgency), Certainty(certainty), ResponseType(response)  # the parser's enums: raise if unknown
    for sev in CAP_SEVERITY.values():
        Severity(sev)
    with pytest.raises(CapError, match="state: no CAP mapping for 'acknowledged'"):
        cap_codes("acknowledged", "critical")
    with pytest.raises(CapError, match="severity: no CAP mapping for 'fatal'"):
        cap_codes("firing", "fatal")


def test_feed_categories_name_known_feeds() -> None:
    assert set(FEED_CATEGORY) <= set(CAT.feeds)


def test_times_are_vietnam_time_with_the_offset_the_schema_requires() -> None:
    assert cap_time(T0) == "2026-01-01T07:00:00+07:00"
    assert cap_time(T0 + 1_999) == "2026-01-01T07:00:01+07:00"  # the schema allows no fraction of a second
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d", cap_time(T0 - 86_400_000 * 400))


# --- the thread of an episode -------------------------------------------------------------------------------

def test_first_firing_is_an_alert_later_events_update_it_and_resolved_is_an_all_clear() -> None:
    events = episode(FIRING_ESCALATED_RESOLVED)
    first = parse_cap(cap_xml(alert_cap(events[0], events[:1], catalog=CAT, public=True)))
    assert (first.identifier, first.msg_type, first.references) == (
        f"controlroom-{events[0]['alert_id']}-1", MsgType.ALERT, None)
    assert str(first.sent) == "2026-01-01T07:00:00+07:00" and first.status is Status.ACTUAL

    for n in (1, 2, 3):
        doc = parse_cap(cap_xml(alert_cap(events[n], events, catalog=CAT, public=True)))
        assert doc.msg_type is MsgType.UPDATE and doc.identifier == f"controlroom-{events[0]['alert_id']}-{n + 1}"
        [ref] = doc.references_to_list()
        assert (ref.sender, ref.identifier, str(ref.sent)) == (first.sender, first.identifier, str(first.sent))
    resolved = parse_cap(cap_xml(alert_cap(events[3], events, catalog=CAT, public=True)))
    assert {(i.urgency, i.certainty, tuple(i.response_types)) for i in resolved.infos} == {
        (Urgency.PAST, Certainty.OBSERVED, (ResponseType.ALL_CLEAR,))}


def test_the_thread_starts_at_the_first_firing_event_not_at_pending() -> None:
    events = episode([("pending", "pending", "warning"), ("firing", "firing", "warning"),
                      ("firing", "firing", "critical")])
    assert thread_start(events[0], events[:1])["seq"] == 1  # still pending: its own thread
    pending = parse_cap(cap_xml(alert_cap(events[0], events[:1], catalog=CAT)))
    assert pending.msg_type is MsgType.ALERT
    assert {(i.urgency, i.certainty) for i in pending.infos} == {(Urgency.EXPECTED, Certainty.LIKELY)}
    fired = parse_cap(cap_xml(alert_cap(events[1], events, catalog=CAT)))
    assert fired.msg_type is MsgType.ALERT and fired.references is None  # the public thread begins here
    rose = parse_cap(cap_xml(alert_cap(events[2], events, catalog=CAT)))
    assert rose.msg_type is MsgType.UPDATE and rose.references_to_list()[0].identifier.endswith("-2")
    assert {i.severity for i in rose.infos} == {Severity.SEVERE}


def test_a_new_episode_starts_a_new_thread() -> None:
    old = episode([("firing", "firing", "warning"), ("resolved", "resolved", "warning")])
    new = episode([("firing", "firing", "warning"), ("repeat", "firing", "warning")], starts=T0 + 90 * MIN,
                  first_seq=3)
    history = old + new
    assert parse_cap(cap_xml(alert_cap(new[0], history, catalog=CAT))).msg_type is MsgType.ALERT
    repeat = parse_cap(cap_xml(alert_cap(new[1], history, catalog=CAT)))
    assert repeat.references_to_list()[0].identifier.endswith("-3")


# --- the document: schema, parser, contents -----------------------------------------------------------------

def _documents() -> list[bytes]:
    events = episode(FIRING_ESCALATED_RESOLVED)
    pm = episode([("pending", "pending", "warning")], rule="pm25_high", feed="air_quality_pm25", province="79")
    national = episode([("firing", "firing", "warning")], rule="fx_usd_vnd_move", rule_type="rate_of_change",
                       feed="fx_usd_vnd", province="00", dims={})
    lost = episode([("firing", "firing", "warning")], rule="connection_lost", rule_type="staleness",
                   feed="water_level", province="38")
    for e in national + lost:
        e["link"] = ""
    return ([cap_xml(alert_cap(e, events, catalog=CAT, public=True)) for e in events]
            + [cap_xml(alert_cap(x[0], x, catalog=CAT)) for x in (pm, national, lost)])


def test_every_document_is_valid_cap_1_2_and_round_trips_through_a_cap_parser() -> None:
    for doc in _documents():
        assert schema_errors(doc) == []
        parsed = parse_cap(doc)
        again = serialise_cap(parsed)  # the parser's own writer, from its model of our document
        assert schema_errors(again) == [] and parse_cap(again) == parsed


def test_the_schema_check_can_fail() -> None:
    doc = cap_xml(alert_cap(episode(FIRING_ESCALATED_RESOLVED)[0], [], catalog=CAT))
    assert schema_errors(doc) == []
    bad = doc.replace(b"<severity>Severe</severity>", b"<severity>Critical</severity>", 1)
    assert any("severity" in e for e in schema_errors(bad))
    late = doc.replace(b"+07:00</sent>", b".123+07:00</sent>", 1)  # a fraction of a second: not CAP
    assert any("sent" in e for e in schema_errors(late))


def test_contents_of_a_public_alert_in_both_languages() -> None:
    events = episode(FIRING_ESCALATED_RESOLVED)
    doc = parse_cap(cap_xml(alert_cap(events[2], events, catalog=CAT, public=True, sender="cr@example.vn")))
    assert (doc.sender, doc.scope, doc.restriction, doc.source) == (
        "cr@example.vn", Scope.PUBLIC, None, CAT.feeds["water_level"].source)
    vi, en = doc.infos
    assert (vi.language, en.language) == ("vi-VN", "en-US")
    assert (vi.event, en.event) == (CAT.feeds["water_level"].name_vi, CAT.feeds["water_level"].name_en)
    assert vi.headline == events[2]["summary_vi"] and en.headline == events[2]["summary_en"]
    assert "Acknowledged by trực ban" in (en.description or "")
    assert "Đã tiếp nhận bởi trực ban" in (vi.description or "")
    for info in (vi, en):
        assert [c.value for c in info.categories] == ["Met"] and info.web == LINK
        assert info.event_codes_to_dict()["controlroom-rule"] == "water_level_alarm"
        assert str(info.onset) == "2026-01-01T07:00:00+07:00"
        p = info.parameters_to_dict()
        assert (p["alert_id"], p["seq"], p["state"], p["event"], p["severity"], p["value"]) == (
            events[2]["alert_id"], "3", "firing", "acknowledged", "critical", "1182.0")
        assert (p["evidence.threshold.value"], p["evidence.threshold.level"], p["evidence.window.max"],
                p["dims.station"]) == ("1150.0", "III", "1182.0", "s1")
        [area] = info.areas
        assert area.geocodes_to_dict()[GEOCODE_PROVINCE] == "01"
        assert area.circles == [f"{CAT.provinces['01'].lat:.4f},{CAT.provinces['01'].lon:.4f} 0"]
    assert (vi.areas[0].area_desc, en.areas[0].area_desc) == ("Thành phố Hà Nội", "Hanoi")


def test_a_rule_that_is_not_public_is_restricted_and_a_pipeline_rule_is_infrastructure() -> None:
    lost = episode([("firing", "firing", "warning")], rule="connection_lost", rule_type="staleness")
    doc = parse_cap(cap_xml(alert_cap(lost[0], lost, catalog=CAT, public=False)))
    assert doc.scope is Scope.RESTRICTED and doc.restriction
    assert {c.value for i in doc.infos for c in i.categories} == {"Infra"}
    assert doc.infos[1].event == f"Data connection lost: {CAT.feeds['water_level'].name_en}"


def test_a_national_alert_covers_the_country() -> None:
    fx = episode([("firing", "firing", "warning")], rule="fx_usd_vnd_move", feed="fx_usd_vnd", province="00", dims={})
    doc = parse_cap(cap_xml(alert_cap(fx[0], fx, catalog=CAT)))
    assert [a.geocodes_to_dict()["ISO3166-1"] for i in doc.infos for a in i.areas] == ["VN", "VN"]
    assert all(not a.circles for i in doc.infos for a in i.areas)


def test_an_incident_can_be_named_for_the_incident_builder_to_come() -> None:
    e = episode([("firing", "firing", "warning")])[0]
    doc = parse_cap(cap_xml(alert_cap(e, [e], catalog=CAT, incidents=["inc-flood-46"])))
    assert doc.incidents_to_list() == ["inc-flood-46"]


# --- the Atom feed ------------------------------------------------------------------------------------------

def test_atom_feed_entries_link_to_cap_documents() -> None:
    events = episode(FIRING_ESCALATED_RESOLVED)
    msgs = [alert_cap(events[1], events, catalog=CAT, public=True),
            alert_cap(events[0], events[:1], catalog=CAT, public=True)]
    body = atom_feed([FeedEntry(m, f"https://cr.example.vn/alerts/{events[0]['alert_id']}/cap", T0 + i)
                      for i, m in enumerate(msgs)], feed_id="https://cr.example.vn/cap/feed",
                     self_url="https://cr.example.vn/cap/feed", title="Public alerts", now_ms=T0)
    feed = feedparser.parse(body)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10" and feed.feed.title == "Public alerts"
    assert [e.id for e in feed.entries] == [f"urn:cap:controlroom@ops.gov.vn:{m.identifier}" for m in msgs]
    for entry in feed.entries:
        [link] = [lk for lk in entry.links if lk.rel == "alternate"]
        assert link.type == CAP_MEDIA_TYPE and link.href.endswith("/cap")
        assert entry.title == events[0]["summary_en"] and "Severe, Immediate, Observed" in entry.summary
    assert feed.feed.updated == "2026-01-01T07:00:00+07:00"
    empty = feedparser.parse(atom_feed([], feed_id="urn:x", self_url="https://cr.example.vn/cap/feed", title="t",
                                       now_ms=T0))
    assert not empty.bozo and empty.entries == []


# --- rules: the public flag ---------------------------------------------------------------------------------

def test_rules_are_not_public_unless_they_say_so() -> None:
    doc = {"id": "x", "version": 1, "type": "staleness", "feed": "*", "severity": "info"}
    [rule] = parse_rules({"rules": [doc]}, CAT)
    assert rule.public is False
    [rule] = parse_rules({"rules": [{**doc, "public": True}]}, CAT)
    assert rule.public is True
    with pytest.raises(RuleError, match=r"^rules\[0\]\.public: must be true or false"):
        parse_rules({"rules": [{**doc, "public": "yes"}]}, CAT)


def test_shipped_public_rules() -> None:
    assert {r.id for r in load_default_rules(CAT) if r.public} == {"water_level_alarm", "pm25_high",
                                                                  "epidemic_cases_surge"}
    docs = {"a": {"public": True}, "b": {"public": False}, "c": {}, "d": {"public": "true"}}
    assert public_rule_ids(docs) == {"a"}
