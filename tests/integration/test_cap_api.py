"""GET /alerts/{id}/cap and GET /cap/feed on a real broker and chDB: alert events published on topic `alerts`,
stored by the sink embedded in the API (alerts_current is filled by its materialized view), then read back
as CAP 1.2 (validated against the OASIS schema, read by a CAP parser) and as an Atom feed (read by a feed
parser) whose entries are the public alerts and link to their CAP documents."""

from __future__ import annotations

from typing import Any

import feedparser
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from cap_tools.models import MsgType, ResponseType, Scope, Severity, Urgency

from controlroom.alerts.cap import CAP_MEDIA_TYPE, cap_identifier, incident_identifier
from controlroom.schema import (
    ALERTS_TOPIC,
    INCIDENTS_TOPIC,
    IncidentMember,
    alert_message,
    fingerprint,
    incident_message,
    now_ms,
)
from tests.cap_checks import parse_cap, schema_errors
from tests.integration.api_client import api_client
from tests.integration.pipeline import wait_for

pytestmark = pytest.mark.integration

MIN = 60_000
HOUR = 60 * MIN


def events(rule: str, rule_type: str, feed: str, province: str, dims: dict[str, str], severity: str,
           steps: list[str], starts: int) -> list[dict[str, Any]]:
    """One alert's events in order (seq 1, 2, …); each step is an event name, its state follows."""
    fp = fingerprint(rule, feed, province, ",".join(f"{k}={v}" for k, v in sorted(dims.items())))
    state_of = {"pending": "pending", "resolved": "resolved"}
    out = []
    for seq, step in enumerate(steps, start=1):
        state = state_of.get(step, "firing")
        ends = starts + (len(steps) - 1) * MIN if state == "resolved" else None
        out.append(dict(alert_message(
            fingerprint_=fp, rule_id=rule, rule_version=2, rule_type=rule_type, severity=severity, event=step,
            state=state, seq=seq, feed=feed, province=province, dims=dims,
            summary_vi=f"{rule} {province} (vi)", summary_en=f"{rule} {province} (en)", value=1182.0,
            evidence={"threshold": {"op": "above", "value": 1150.0, "level": "III"}, "window": {"max": 1182.0}},
            starts_at_ms=starts, ends_at_ms=ends, event_at_ms=starts + (seq - 1) * MIN,
            link=f"http://localhost:3000/d/controlroom-feed-explorer/feed-explorer?var-feed={feed}&from=1")))
    return out


async def test_cap_document_and_public_feed(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    now = now_ms()
    flood = events("water_level_alarm", "threshold", "water_level", "01", {"station": "s1"}, "critical",
                   ["firing", "escalated"], now - 10 * MIN)
    waiting = events("water_level_alarm", "threshold", "water_level", "92", {"station": "s1"}, "warning",
                     ["pending"], now - 2 * MIN)
    silent = events("connection_lost", "staleness", "water_level", "38", {"station": "s2"}, "warning",
                    ["firing"], now - 5 * MIN)
    cleared = events("pm25_high", "threshold", "air_quality_pm25", "79", {"station": "s1"}, "warning",
                     ["pending", "firing", "resolved"], now - 40 * MIN)
    long_ago = events("pm25_high", "threshold", "air_quality_pm25", "48", {"station": "s1"}, "warning",
                      ["firing", "resolved"], now - 50 * HOUR)
    everything = [flood, waiting, silent, cleared, long_ago]
    # an incident gathering the flood alert and a rescue alert in Hà Nội, then acknowledged
    rescue = events("sar_flood_incidents", "threshold", "sar_incidents", "01", {"type": "flood"}, "critical",
                    ["firing"], now - 8 * MIN)
    everything.append(rescue)

    def member(a: dict[str, Any], signal: str) -> IncidentMember:
        return {"alert_id": a["alert_id"], "rule_id": a["rule_id"], "feed": a["feed"], "province": a["province"],
                "dims": a["dims"], "signal": signal, "severity": a["severity"], "state": "firing",
                "fired_at": a["starts_at"], "joined_at": now - 8 * MIN}

    members = [member(flood[0], "water_level"), member(rescue[0], "rescue_flood")]
    iid = "0123456789abcdef"
    incident = [dict(incident_message(
        incident_id=iid, seq=seq, type_id="flood", type_version=1, scope="province", province="01",
        severity="critical", event=event, state=state, title_vi="Lũ lụt – Thành phố Hà Nội",
        title_en="Flooding – Hanoi",
        members=members, opened_at_ms=now - 8 * MIN, resolved_at_ms=None, event_at_ms=now - (8 - seq) * MIN,
        ack={"by": "trực ban", "comment": ""} if state == "acknowledged" else None))
        for seq, (event, state) in enumerate([("opened", "open"), ("acknowledged", "acknowledged")], start=1)]

    settings = make_settings(kafka_bootstrap=broker, embedded_sink=True, sink_flush_interval_s=0.2,
                             cap_sender="cap@ops.example.vn")
    with api_client(settings) as (client, keys):
        h = keys.header("viewer")
        producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
        await producer.start()
        try:
            for alert in everything:
                for e in alert:
                    await producer.send_and_wait(ALERTS_TOPIC, orjson.dumps(e), key=e["fingerprint"].encode())
            for i in incident:
                await producer.send_and_wait(INCIDENTS_TOPIC, orjson.dumps(i), key=iid.encode())
        finally:
            await producer.stop()

        def stored() -> bool:
            rows = client.get("/alerts", params={"state": "all"}, headers=h).json()
            return {(r["alert_id"], r["seq"]) for r in rows} == {(a[-1]["alert_id"], a[-1]["seq"]) for a in everything}

        await wait_for(stored, timeout_s=60, what="the alert events stored by the embedded sink")

        def incident_stored() -> bool:
            return [r["seq"] for r in client.get("/incidents", headers=h).json()] == [2]

        await wait_for(incident_stored, timeout_s=60, what="the incident events stored by the embedded sink")

        # --- one incident as CAP: the province, both languages, its members with their own CAP documents
        assert client.get(f"/incidents/{iid}/cap").status_code == 401
        assert client.get("/incidents/fedcba9876543210/cap", headers=h).status_code == 404
        assert client.get("/incidents/nope/cap", headers=h).status_code == 422
        r = client.get(f"/incidents/{iid}/cap", headers=h)
        assert r.status_code == 200 and r.headers["content-type"].startswith(CAP_MEDIA_TYPE)
        assert schema_errors(r.content) == []
        doc = parse_cap(r.content)
        assert (doc.identifier, doc.msg_type, doc.scope, doc.incidents_to_list()) == (
            incident_identifier(iid, 2), MsgType.UPDATE, Scope.RESTRICTED, [iid])
        assert [ref.identifier for ref in doc.references_to_list()] == [incident_identifier(iid, 1)]
        assert [(i.language, i.event, i.areas[0].area_desc) for i in doc.infos] == [
            ("vi-VN", "Lũ lụt", "Thành phố Hà Nội"), ("en-US", "Flooding", "Hanoi")]
        p = doc.infos[1].parameters_to_dict()
        assert (p["state"], p["ack_by"], p["members"]) == ("acknowledged", "trực ban", "2")
        assert p["member.1.alert_id"] == flood[0]["alert_id"]
        # the member's reference names the alert's current CAP document, which the API serves
        assert p["member.1.cap"].split(",")[1] == cap_identifier(flood[0]["alert_id"], 2)
        assert parse_cap(client.get(f"/alerts/{flood[0]['alert_id']}/cap", headers=h).content).identifier == \
            p["member.1.cap"].split(",")[1]
        assert p["member.2.cap"].split(",")[1] == cap_identifier(rescue[0]["alert_id"], 1)
        # and each member's own document names the incident in <incidents>; an alert of no incident names none
        for a in (flood, rescue):
            member_doc = parse_cap(client.get(f"/alerts/{a[0]['alert_id']}/cap", headers=h).content)
            assert member_doc.incidents_to_list() == [iid]
        assert parse_cap(client.get(f"/alerts/{silent[0]['alert_id']}/cap", headers=h).content).incidents is None

        # --- one alert as CAP
        fid = flood[0]["alert_id"]
        assert client.get(f"/alerts/{fid}/cap").status_code == 401
        assert client.get("/alerts/0123456789abcdef/cap", headers=h).status_code == 404
        r = client.get(f"/alerts/{fid}/cap", headers=h)
        assert r.status_code == 200 and r.headers["content-type"].startswith(CAP_MEDIA_TYPE)
        assert schema_errors(r.content) == []
        doc = parse_cap(r.content)
        assert (doc.identifier, doc.sender, doc.msg_type, doc.scope) == (
            f"controlroom-{fid}-2", "cap@ops.example.vn", MsgType.UPDATE, Scope.PUBLIC)
        [ref] = doc.references_to_list()
        assert ref.identifier == f"controlroom-{fid}-1" and str(doc.sent).endswith("+07:00")
        assert [i.language for i in doc.infos] == ["vi-VN", "en-US"]
        assert {i.severity for i in doc.infos} == {Severity.SEVERE}
        assert [i.areas[0].area_desc for i in doc.infos] == ["Thành phố Hà Nội", "Hanoi"]
        assert doc.infos[1].parameters_to_dict()["evidence.threshold.value"] == "1150.0"
        assert doc.infos[0].web == flood[-1]["link"]

        restricted = parse_cap(client.get(f"/alerts/{silent[0]['alert_id']}/cap", headers=h).content)
        assert restricted.scope is Scope.RESTRICTED and restricted.msg_type is MsgType.ALERT

        # --- the public feed
        assert client.get("/cap/feed").status_code == 401
        r = client.get("/cap/feed", headers=h)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/atom+xml")
        feed = feedparser.parse(r.content)
        assert not feed.bozo, feed.get("bozo_exception")
        entries = {e.id: e for e in feed.entries}
        # public and fired: the flood (firing) and the cleared PM2.5 (resolved 37 min ago); not the pending one,
        # not connection_lost (not a public rule), not the PM2.5 resolved two days ago
        assert set(entries) == {f"urn:cap:cap@ops.example.vn:controlroom-{fid}-2",
                                f"urn:cap:cap@ops.example.vn:controlroom-{cleared[0]['alert_id']}-3"}
        for entry in feed.entries:
            [link] = [lk for lk in entry.links if lk.rel == "alternate"]
            assert link.type == CAP_MEDIA_TYPE
            cap = client.get(link.href, headers=h)  # the link is the document itself
            assert cap.status_code == 200 and schema_errors(cap.content) == []
            assert entry.id.endswith(parse_cap(cap.content).identifier)
        cleared_doc = parse_cap(client.get(f"/alerts/{cleared[0]['alert_id']}/cap", headers=h).content)
        assert cleared_doc.msg_type is MsgType.UPDATE
        assert cleared_doc.references_to_list()[0].identifier.endswith("-2")  # its first firing, not pending
        assert {(i.urgency, tuple(i.response_types)) for i in cleared_doc.infos} == {
            (Urgency.PAST, (ResponseType.ALL_CLEAR,))}

        # a rule made public through the API joins the feed at once
        rule = client.get("/rules/connection_lost", headers=h).json()
        put = client.put("/rules/connection_lost", json={**rule, "public": True}, headers=keys.header("admin"))
        assert put.status_code == 200, put.text
        ids = {e.id for e in feedparser.parse(client.get("/cap/feed", headers=h).content).entries}
        assert f"urn:cap:cap@ops.example.vn:controlroom-{silent[0]['alert_id']}-1" in ids
