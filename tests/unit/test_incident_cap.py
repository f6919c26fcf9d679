"""CAP 1.2 for incidents (issue 13): incidents formed by the real correlator from the shipped incident types, each
of their events as a CAP document valid against the OASIS schema and read back by a CAP parser; one <info> per
language, the province as the area, the member alerts as parameters with their own CAP references."""

from __future__ import annotations

from typing import Any

import pytest
from cap_tools.models import MsgType, ResponseType, Scope, Severity, Urgency

from controlroom.alerts.cap import (
    EVENT_CODE_INCIDENT,
    GEOCODE_COUNTRY,
    GEOCODE_PROVINCE,
    cap_identifier,
    cap_reference,
    cap_xml,
    incident_cap,
    incident_identifier,
)
from controlroom.alerts.incident_rules import load_incident_types
from controlroom.alerts.incidents import IncidentCorrelator
from controlroom.catalog import Catalog, default_catalog
from controlroom.schema import AlertEvent, IncidentEvent, alert_message, control_message, fingerprint
from tests.cap_checks import parse_cap, schema_errors, serialise_cap

CAT: Catalog = default_catalog()
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z = 07:00 in Việt Nam
MIN = 60_000
SENDER = "cap@ops.example.vn"


def alert(rule: str, feed: str, province: str, dims: dict[str, str], state: str, seq: int, at: int,
          starts: int) -> AlertEvent:
    fp = fingerprint(rule, feed, province, ",".join(f"{k}={v}" for k, v in sorted(dims.items())))
    return alert_message(fingerprint_=fp, rule_id=rule, rule_version=1, rule_type="threshold", severity="critical",
                         event=state, state=state, seq=seq, feed=feed, province=province, dims=dims,
                         summary_vi="vi", summary_en="en", value=1.0, evidence={}, starts_at_ms=starts,
                         ends_at_ms=at if state == "resolved" else None, event_at_ms=at)


def flood_in_hue() -> tuple[list[IncidentEvent], list[AlertEvent]]:
    """A flood in Huế (46): water level and flood rescues fire, an operator acknowledges, both resolve."""
    corr = IncidentCorrelator(load_incident_types(None, CAT), CAT)
    water = [alert("water_level_alarm", "water_level", "46", {"station": "s1"}, "firing", 1, T0, T0),
             alert("water_level_alarm", "water_level", "46", {"station": "s1"}, "resolved", 2, T0 + 50 * MIN, T0)]
    rescue = [alert("sar_flood_incidents", "sar_incidents", "46", {"type": "flood"}, "firing", 1, T0 + 5 * MIN,
                    T0 + 5 * MIN),
              alert("sar_flood_incidents", "sar_incidents", "46", {"type": "flood"}, "resolved", 2, T0 + 55 * MIN,
                    T0 + 5 * MIN)]
    out = corr.on_alerts([water[0], rescue[0]])
    iid = out[0]["incident_id"]
    out += corr.on_control(control_message("incident.ack", by="trực ban", at_ms=T0 + 10 * MIN, incident_id=iid,
                                           comment="đã cử đội"))
    out += corr.on_control(control_message("incident.assign", by="trực ban", at_ms=T0 + 11 * MIN, incident_id=iid,
                                           assignee="đội cứu hộ"))
    out += corr.on_alerts([water[1], rescue[1]])
    return out, [water[-1], rescue[-1]]


def as_api(e: IncidentEvent) -> dict[str, Any]:
    """The incident as GET /incidents/{id} answers it (the same fields an event carries)."""
    return {**e, "alert_ids": [m["alert_id"] for m in e["members"]]}


def test_every_incident_event_is_valid_cap_1_2_and_round_trips() -> None:
    events, alerts = flood_in_hue()
    # the alert that opened it is named by `opened`, the other one joins
    assert [e["event"] for e in events] == ["opened", "alert_joined", "acknowledged", "assigned",
                                            "alert_resolved", "alert_resolved", "resolved"]
    for e in events:
        doc = cap_xml(incident_cap(as_api(e), alerts, catalog=CAT, sender=SENDER))
        assert schema_errors(doc) == [], e["event"]
        parsed = parse_cap(doc)
        again = serialise_cap(parsed)
        assert schema_errors(again) == [] and parse_cap(again) == parsed


def test_the_schema_check_of_an_incident_can_fail() -> None:
    events, alerts = flood_in_hue()
    doc = cap_xml(incident_cap(as_api(events[0]), alerts, catalog=CAT))
    assert schema_errors(doc) == []
    assert schema_errors(doc.replace(b"<msgType>Alert</msgType>", b"<msgType>Opened</msgType>", 1))


def test_opened_is_the_alert_of_the_thread_in_both_languages() -> None:
    events, _alerts = flood_in_hue()
    opened = events[1]  # the last event of the opening: both members there
    first = parse_cap(cap_xml(incident_cap(as_api(events[0]), [], catalog=CAT, sender=SENDER)))
    assert (first.identifier, first.msg_type, first.references) == (
        incident_identifier(events[0]["incident_id"], 1), MsgType.ALERT, None)
    doc = parse_cap(cap_xml(incident_cap(as_api(opened), [], catalog=CAT, sender=SENDER)))
    iid = opened["incident_id"]
    assert doc.incidents_to_list() == [iid]
    assert (doc.sender, doc.scope, doc.msg_type) == (SENDER, Scope.RESTRICTED, MsgType.UPDATE)
    [ref] = doc.references_to_list()
    assert ref.identifier == incident_identifier(iid, 1) and ref.sender == SENDER
    vi, en = doc.infos
    assert (vi.language, en.language) == ("vi-VN", "en-US")
    assert (vi.event, en.event) == ("Lũ lụt", "Flooding")
    assert (vi.headline, en.headline) == (opened["title_vi"], opened["title_en"])
    assert (vi.areas[0].area_desc, en.areas[0].area_desc) == (CAT.provinces["46"].name_vi, CAT.provinces["46"].name_en)
    for info in (vi, en):
        assert info.severity is Severity.SEVERE and info.urgency is Urgency.IMMEDIATE
        assert [c.value for c in info.categories] == ["Met", "Rescue"]  # water level, flood rescues
        assert info.event_codes_to_dict()[EVENT_CODE_INCIDENT] == "flood"
        assert info.areas[0].geocodes_to_dict()[GEOCODE_PROVINCE] == "46"
        assert str(info.onset) == "2026-01-01T07:05:00+07:00"  # opened when the second signal fired
        p = info.parameters_to_dict()
        assert (p["incident_id"], p["seq"], p["state"], p["type"], p["members"]) == (iid, "2", "open", "flood", "2")
        assert p["signals"] == "rescue_flood,water_level"
        assert {p["member.1.signal"], p["member.2.signal"]} == {"water_level", "rescue_flood"}
        assert {p["member.1.feed"], p["member.2.feed"]} == {"water_level", "sar_incidents"}


def test_acknowledged_and_resolved_update_the_thread() -> None:
    events, alerts = flood_in_hue()
    iid = events[0]["incident_id"]
    ack = parse_cap(cap_xml(incident_cap(as_api(events[4]), alerts, catalog=CAT, sender=SENDER)))
    assert ack.msg_type is MsgType.UPDATE and ack.references_to_list()[0].identifier == incident_identifier(iid, 1)
    assert "Acknowledged by trực ban" in (ack.infos[1].description or "")
    assert "Giao cho đội cứu hộ" in (ack.infos[0].description or "")
    p = ack.infos[1].parameters_to_dict()
    assert (p["state"], p["ack_by"], p["assignee"]) == ("acknowledged", "trực ban", "đội cứu hộ")
    # each member points at its alert's own current CAP document
    by_id = {a["alert_id"]: a for a in alerts}
    for n in (1, 2):
        a = by_id[p[f"member.{n}.alert_id"]]
        assert p[f"member.{n}.cap"] == cap_reference(SENDER, cap_identifier(a["alert_id"], a["seq"]), a["event_at"])
    over = parse_cap(cap_xml(incident_cap(as_api(events[-1]), alerts, catalog=CAT, sender=SENDER)))
    assert {(i.urgency, tuple(i.response_types)) for i in over.infos} == {(Urgency.PAST, (ResponseType.ALL_CLEAR,))}
    assert over.msg_type is MsgType.UPDATE
    assert over.infos[1].parameters_to_dict()["member.1.state"] == "resolved"
    assert "Resolved: 2026-01-01T07:55:00+07:00" in (over.infos[1].description or "")


def test_a_national_incident_covers_the_country() -> None:
    corr = IncidentCorrelator(load_incident_types(None, CAT), CAT)
    out = corr.on_alerts([alert("fx_usd_vnd_move", "fx_usd_vnd", "00", {}, "firing", 1, T0, T0),
                          alert("gold_price_move", "gold_price", "00", {}, "firing", 1, T0 + MIN, T0 + MIN)])
    assert out and out[0]["type"] == "market_shock"
    doc = parse_cap(cap_xml(incident_cap(as_api(out[-1]), [], catalog=CAT)))
    assert schema_errors(cap_xml(incident_cap(as_api(out[-1]), [], catalog=CAT))) == []
    assert [a.geocodes_to_dict()[GEOCODE_COUNTRY] for i in doc.infos for a in i.areas] == ["VN", "VN"]
    assert [i.event for i in doc.infos] == ["Biến động thị trường", "Market shock"]
    assert all(i.severity is Severity.MODERATE for i in doc.infos)


@pytest.mark.parametrize("state", ["open", "acknowledged", "resolved"])
def test_every_incident_state_maps(state: str) -> None:
    events, _ = flood_in_hue()
    doc = incident_cap({**as_api(events[0]), "state": state}, [], catalog=CAT)
    assert schema_errors(cap_xml(doc)) == []
