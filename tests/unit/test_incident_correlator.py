"""The incident correlator (controlroom/alerts/incidents.py) and incident types (incident_rules.py), on alert
events built with the real wire builder."""

from __future__ import annotations

from typing import Any

import pytest

from controlroom.alerts.incident_rules import IncidentRuleError, load_incident_types, parse_incident_types
from controlroom.alerts.incidents import IncidentCorrelator, alert_note_of
from controlroom.catalog import Catalog
from controlroom.schema import AlertEvent, IncidentEvent, alert_message, control_message, fingerprint

MIN = 60_000
T0 = 1_790_000_000_000

TYPES = {"incident_types": [
    {"id": "flood", "version": 1, "scope": "province", "window_s": 3600, "min_signals": 2, "severity": "critical",
     "title": {"vi": "Lũ lụt – {province_vi}", "en": "Flooding – {province_en}"},
     "signals": [{"id": "water", "rule": "water_level_alarm"},
                 {"id": "rescue", "feed": "sar_incidents", "dims": {"type": ["flood"]}},
                 {"id": "calls", "feed": "hotline_calls", "dims": {"line": ["114", "115"]}}]},
    {"id": "market", "version": 1, "scope": "national", "window_s": 600, "min_signals": 2, "severity": "warning",
     "title": {"vi": "Thị trường", "en": "Market"},
     "signals": [{"id": "fx", "feed": "fx_usd_vnd"}, {"id": "gold", "feed": "gold_price"},
                 {"id": "prices", "feed": "commodity_prices"}]},
]}


class Alerts:
    """Alert events as the alert book emits them: one seq per event of a fingerprint."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}
        self.starts: dict[str, int] = {}

    def event(self, rule: str, feed: str, province: str, state: str, at: int, **dims: str) -> AlertEvent:
        fp = fingerprint(rule, feed, province, ",".join(f"{k}={v}" for k, v in sorted(dims.items())))
        self.seq[fp] = self.seq.get(fp, 0) + 1
        if state == "firing" and fp not in self.starts:
            self.starts[fp] = at
        starts = self.starts.get(fp, at)
        if state == "resolved":
            self.starts.pop(fp, None)
        return alert_message(fingerprint_=fp, rule_id=rule, rule_version=1, rule_type="threshold", severity="warning",
                             event=state, state=state, seq=self.seq[fp], feed=feed, province=province, dims=dims,
                             summary_vi="", summary_en="", value=1.0, evidence={}, starts_at_ms=starts,
                             ends_at_ms=at if state == "resolved" else None, event_at_ms=at)


@pytest.fixture()
def corr(catalog: Catalog) -> IncidentCorrelator:
    return IncidentCorrelator(parse_incident_types(TYPES, catalog), catalog)


def kinds(events: list[IncidentEvent]) -> list[str]:
    return [e["event"] for e in events]


def test_the_shipped_incident_types_are_valid(catalog: Catalog) -> None:
    types = load_incident_types(None, catalog)
    assert len(types) >= 4
    assert {"flood", "epidemic_outbreak", "public_service_outage", "market_shock"} <= {t.id for t in types}


def test_opens_at_min_signals_and_not_before(corr: IncidentCorrelator) -> None:
    a = Alerts()
    # two water-level stations are one signal: no incident
    assert corr.on_alert(a.event("water_level_alarm", "water_level", "46", "firing", T0, station="s1")) == []
    assert corr.on_alert(a.event("water_level_alarm", "water_level", "46", "firing", T0 + MIN, station="s2")) == []
    # a hotline surge on a line that is not a signal (111), and a flood rescue in another province: no incident
    assert corr.on_alert(a.event("calls_jump", "hotline_calls", "46", "firing", T0 + MIN, line="111")) == []
    assert corr.on_alert(a.event("sar_flood", "sar_incidents", "48", "firing", T0 + MIN, type="flood")) == []
    # the second distinct signal in the same province opens one incident gathering the three alerts
    out = corr.on_alert(a.event("sar_flood", "sar_incidents", "46", "firing", T0 + 2 * MIN, type="flood"))
    assert kinds(out) == ["opened", "alert_joined", "alert_joined"]  # the opener is named by `opened`
    last = out[-1]
    assert last["province"] == "46" and last["type"] == "flood" and last["state"] == "open"
    assert (last["title_vi"], last["title_en"]) == ("Lũ lụt – Thành phố Huế", "Flooding – Hue")
    assert last["signals"] == ["rescue", "water"]
    assert [m["signal"] for m in last["members"]] == ["water", "water", "rescue"]
    assert [e["seq"] for e in out] == [1, 2, 3]
    assert out[0]["members"] == last["members"]  # `opened` carries every member already
    assert len({e["incident_id"] for e in out}) == 1


def test_later_alerts_join_and_it_resolves_when_all_resolved(corr: IncidentCorrelator) -> None:
    a = Alerts()
    corr.on_alert(a.event("water_level_alarm", "water_level", "46", "firing", T0, station="s1"))
    opened = corr.on_alert(a.event("sar_flood", "sar_incidents", "46", "firing", T0 + MIN, type="flood"))
    iid = opened[0]["incident_id"]
    # hours later, still open: a call surge joins whatever the window (it bounds the opening only)
    joined = corr.on_alert(a.event("calls_jump", "hotline_calls", "46", "firing", T0 + 5 * 3600_000, line="114"))
    assert kinds(joined) == ["alert_joined"] and joined[0]["incident_id"] == iid
    assert joined[0]["signals"] == ["calls", "rescue", "water"]
    left = corr.on_alert(a.event("sar_flood", "sar_incidents", "46", "resolved", T0 + 6 * 3600_000, type="flood"))
    assert kinds(left) == ["alert_resolved"] and left[0]["state"] == "open"
    corr.on_alert(a.event("water_level_alarm", "water_level", "46", "resolved", T0 + 6 * 3600_000, station="s1"))
    end = corr.on_alert(a.event("calls_jump", "hotline_calls", "46", "resolved", T0 + 7 * 3600_000, line="114"))
    assert kinds(end) == ["alert_resolved", "resolved"]
    assert end[-1]["state"] == "resolved" and end[-1]["resolved_at"] == T0 + 7 * 3600_000
    assert [m["state"] for m in end[-1]["members"]] == ["resolved"] * 3
    # a new flood there later is a new incident
    corr.on_alert(a.event("water_level_alarm", "water_level", "46", "firing", T0 + 8 * 3600_000, station="s1"))
    again = corr.on_alert(a.event("sar_flood", "sar_incidents", "46", "firing", T0 + 8 * 3600_000, type="flood"))
    assert kinds(again)[0] == "opened" and again[0]["incident_id"] != iid


def test_signals_outside_the_window_do_not_open_an_incident(corr: IncidentCorrelator) -> None:
    a = Alerts()
    corr.on_alert(a.event("water_level_alarm", "water_level", "46", "firing", T0, station="s1"))
    assert corr.on_alert(a.event("sar_flood", "sar_incidents", "46", "firing", T0 + 3601_000, type="flood")) == []
    # a third signal within the window of the second: two distinct signals near each other; the water level,
    # firing for longer, is gathered too
    out = corr.on_alert(a.event("calls_jump", "hotline_calls", "46", "firing", T0 + 3700_000, line="115"))
    assert kinds(out) == ["opened", "alert_joined", "alert_joined"]  # the opener is named by `opened`
    assert out[-1]["signals"] == ["calls", "rescue", "water"]


def test_national_scope_correlates_across_provinces(corr: IncidentCorrelator) -> None:
    a = Alerts()
    assert corr.on_alert(a.event("fx_move", "fx_usd_vnd", "00", "firing", T0)) == []
    out = corr.on_alert(a.event("prices_jump", "commodity_prices", "79", "firing", T0 + MIN, commodity="rice"))
    assert kinds(out)[0] == "opened" and out[0]["province"] == "00" and out[0]["scope"] == "national"


def test_replayed_alert_events_are_ignored(corr: IncidentCorrelator) -> None:
    a = Alerts()
    w = a.event("water_level_alarm", "water_level", "46", "firing", T0, station="s1")
    r = a.event("sar_flood", "sar_incidents", "46", "firing", T0 + MIN, type="flood")
    assert kinds(corr.on_alerts([w, r]))[0] == "opened"
    assert corr.on_alerts([w, r]) == []  # the same events again (an alerter replaying its inputs)
    rr = a.event("sar_flood", "sar_incidents", "46", "resolved", T0 + 2 * MIN, type="flood")
    assert kinds(corr.on_alert(rr)) == ["alert_resolved"]
    assert corr.on_alerts([r, rr]) == []  # an older firing does not bring it back


def test_commands_ack_assign_comment_and_their_replay(corr: IncidentCorrelator) -> None:
    a = Alerts()
    corr.on_alert(a.event("water_level_alarm", "water_level", "46", "firing", T0, station="s1"))
    iid = corr.on_alert(a.event("sar_flood", "sar_incidents", "46", "firing", T0 + MIN, type="flood"))[0]["incident_id"]
    ack = control_message("incident.ack", by="duty", at_ms=T0 + 2 * MIN, incident_id=iid, comment="đã cử đội")
    assign = control_message("incident.assign", by="duty", at_ms=T0 + 3 * MIN, incident_id=iid, assignee="lan")
    note = control_message("incident.comment", by="lan", at_ms=T0 + 4 * MIN, incident_id=iid, comment="nước rút")
    out = [e for c in (ack, assign, note) for e in corr.on_control(c)]
    assert kinds(out) == ["acknowledged", "assigned", "commented"]
    assert out[0]["state"] == "acknowledged" and out[0]["ack"] == {"by": "duty", "comment": "đã cử đội",
                                                                    "at": T0 + 2 * MIN}
    assert out[1]["assignee"] == "lan" and out[2]["comment"] == "nước rút" and out[2]["by"] == "lan"
    assert [e for c in (ack, assign, note) for e in corr.on_control(c)] == []  # replayed: nothing twice
    again = control_message("incident.ack", by="other", at_ms=T0 + 5 * MIN, incident_id=iid, comment="")
    assert corr.on_control(again) == []  # acknowledged already
    assert corr.on_control(control_message("incident.ack", by="x", at_ms=T0, incident_id="0" * 16)) == []
    # an acknowledged incident still resolves, and still takes comments afterwards
    corr.on_alert(a.event("water_level_alarm", "water_level", "46", "resolved", T0 + 9 * MIN, station="s1"))
    end = corr.on_alert(a.event("sar_flood", "sar_incidents", "46", "resolved", T0 + 9 * MIN, type="flood"))
    assert kinds(end)[-1] == "resolved" and end[-1]["assignee"] == "lan"
    late = corr.on_control(control_message("incident.comment", by="lan", at_ms=T0 + 10 * MIN, incident_id=iid,
                                           comment="báo cáo"))
    assert kinds(late) == ["commented"] and late[0]["state"] == "resolved"


def test_snapshot_restore_carries_on_identically(corr: IncidentCorrelator, catalog: Catalog) -> None:
    a = Alerts()
    events = [a.event("water_level_alarm", "water_level", "46", "firing", T0, station="s1"),
              a.event("sar_flood", "sar_incidents", "46", "firing", T0 + MIN, type="flood"),
              a.event("calls_jump", "hotline_calls", "46", "firing", T0 + 2 * MIN, line="114")]
    rest = [a.event("sar_flood", "sar_incidents", "46", "resolved", T0 + 3 * MIN, type="flood"),
            a.event("water_level_alarm", "water_level", "46", "resolved", T0 + 4 * MIN, station="s1"),
            a.event("calls_jump", "hotline_calls", "46", "resolved", T0 + 5 * MIN, line="114")]
    corr.on_alerts(events)
    data = corr.snapshot()
    assert data.startswith(b"{")  # plain JSON
    twin = IncidentCorrelator(parse_incident_types(TYPES, catalog), catalog)
    twin.restore(data)
    expected = corr.on_alerts(rest)
    got = twin.on_alerts(rest)
    assert got == expected and kinds(got)[-1] == "resolved"


def test_alert_notes_from_commands() -> None:
    cmd = control_message("alert.assign", by="duty", at_ms=T0, alert_id="ab" * 8, assignee="minh")
    note = alert_note_of(cmd)
    assert note is not None and note["kind"] == "assigned" and note["assignee"] == "minh"
    assert alert_note_of(cmd) == note  # content-addressed: a replay is the same note
    comment = alert_note_of(control_message("alert.comment", by="duty", at_ms=T0, alert_id="ab" * 8, comment="ok"))
    assert comment is not None and comment["kind"] == "commented" and comment["note_id"] != note["note_id"]
    assert alert_note_of(control_message("ack", by="duty", at_ms=T0, alert_id="ab" * 8)) is None


@pytest.mark.parametrize(("change", "message"), [
    ({"min_signals": 0}, "incident_types[0].min_signals: must be a positive integer"),
    ({"min_signals": 9}, "incident_types[0].min_signals: must be at most the number of signals (3)"),
    ({"scope": "region"}, "incident_types[0].scope: must be one of province, national"),
    ({"window_s": "1h"}, "incident_types[0].window_s: must be a positive number"),
    ({"severity": "huge"}, "incident_types[0].severity: must be one of info, warning, critical"),
    ({"title": {"vi": "x {city}", "en": "y"}}, "incident_types[0].title.vi: unknown placeholder"),
    ({"signals": [{"id": "a", "feed": "nope"}]}, "incident_types[0].signals[0].feed: unknown feed 'nope'"),
    ({"signals": [{"id": "a"}]}, "incident_types[0].signals[0]: needs a rule, a feed, or both"),
    ({"signals": [{"id": "a", "feed": "sar_incidents", "dims": {"type": ["tsunami"]}}]},
     "incident_types[0].signals[0].dims.type: 'tsunami' is not one of"),
    ({"signals": [{"id": "a", "feed": "sar_incidents", "dims": {"colour": ["red"]}}]},
     "incident_types[0].signals[0].dims.colour: feed sar_incidents has dims"),
    ({"bogus": 1}, "incident_types[0].bogus: unknown field"),
])
def test_invalid_types_name_the_field(catalog: Catalog, change: dict[str, Any], message: str) -> None:
    doc = {"incident_types": [{**TYPES["incident_types"][0], **change}]}
    if "signals" in change and "min_signals" not in change:
        doc["incident_types"][0]["min_signals"] = 1
    with pytest.raises(IncidentRuleError) as err:
        parse_incident_types(doc, catalog)
    assert str(err.value).startswith(message)


def test_anchors_keep_generic_signals_from_opening_an_incident(catalog: Catalog) -> None:
    doc = {"incident_types": [{**TYPES["incident_types"][0], "anchors": ["water", "rescue"]}]}
    corr = IncidentCorrelator(parse_incident_types(doc, catalog), catalog)
    a = Alerts()
    corr.on_alert(a.event("calls_jump", "hotline_calls", "46", "firing", T0, line="114"))
    assert corr.on_alert(a.event("calls_jump", "hotline_calls", "46", "firing", T0, line="115")) == []
    out = corr.on_alert(a.event("water_level_alarm", "water_level", "46", "firing", T0 + MIN, station="s1"))
    assert kinds(out) == ["opened", "alert_joined", "alert_joined"]  # the opener is named by `opened`
    with pytest.raises(IncidentRuleError, match=r"incident_types\[0\].anchors\[0\]: 'x' is not one of the signals"):
        parse_incident_types({"incident_types": [{**TYPES["incident_types"][0], "anchors": ["x"]}]}, catalog)
