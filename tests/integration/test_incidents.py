"""Incidents end to end: a simulated flood in one province (the `flood` scenario of `controlroom simulate`)
runs through the real pipeline — Tansu broker, streams worker and alerter as processes, the API with its
embedded sink on chDB — and forms exactly one incident, visible in GET /incidents with its member alerts;
then the incident and alert commands travel over alerts.control to the alerter and come back stored.

The shipped flood rules (controlroom/data/rules.yaml) and incident types (incidents.yaml) are used as they
are; only the rules unrelated to the scenario are left out, so the staleness of the series the test does not
send raises nothing. The simulator's messages for provinces 46 (the flood) and 01 (an ordinary day) over the
last 14 minutes are published at once: event time moves the windows, so nothing waits for the clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import yaml
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from controlroom.alerts.rules import read_rule_docs
from controlroom.broker import start_tansu
from controlroom.catalog import default_catalog
from controlroom.schema import agency_headers, now_ms
from controlroom.settings import Settings
from producers.scenarios import parse_scenario
from producers.simulator import Simulator
from tests.conftest import free_port
from tests.integration.api_client import Keys, api_client
from tests.integration.pipeline import poll, services

pytestmark = pytest.mark.integration

FLOOD_RULES = ("water_level_alarm", "sar_flood_incidents", "hotline_calls_high", "citizen_reports_high")
FEEDS = ("water_level", "sar_incidents", "hotline_calls", "citizen_feedback")
PROVINCES = ("46", "01")
MIN = 60_000


class Flood:
    def __init__(self, client: TestClient, keys: Keys) -> None:
        self.client, self.keys = client, keys

    def get(self, path: str, role: str = "viewer", **params: Any) -> Any:
        r = self.client.get(path, params=params, headers=self.keys.header(role))
        assert r.status_code == 200, r.text
        return r.json()

    def post(self, path: str, body: dict[str, Any], role: str = "operator") -> Any:
        return self.client.post(path, json=body, headers=self.keys.header(role))

    def wait(self, check: Any, what: str, timeout_s: float = 90.0) -> Any:
        return poll(check, what, timeout_s, every_s=0.3)


def flood_messages(end_ms: int) -> list[tuple[str, bytes, bytes]]:
    """The simulator over the last 14 minutes, the flood in 46 from minute 3; only the scenario's feeds
    in 46 and 01."""
    catalog = default_catalog()
    start = end_ms - 14 * MIN
    scenario = parse_scenario("flood:province=46,start=+180,duration=3600,ramp=120", start, catalog)
    sim = Simulator(catalog, seed=7, start_ms=start, incidents=scenario)
    out = []
    for topic, key, value in sim.between(start, end_ms):
        doc = orjson.loads(value)
        if doc["feed"] in FEEDS and doc["province"] in PROVINCES:
            out.append((topic, key, value))
    return out


@pytest.fixture(scope="module")
def flood(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flood]:
    tmp = tmp_path_factory.mktemp("incidents")
    port = free_port()
    broker = start_tansu(port, tmp / "tansu.log")
    rules = tmp / "rules.yaml"
    rules.write_text(yaml.safe_dump({"rules": [d for d in read_rule_docs(None) if d["id"] in FLOOD_RULES]},
                                    allow_unicode=True))
    settings = Settings(data_dir=tmp / "data", clickhouse_url=f"chdb://{tmp / 'warehouse'}",  # type: ignore[arg-type]
                        kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=False, log_format="console",
                        topic_partitions=2, allowed_lateness_s=1.0, live_interval_s=0.2, alerter_tick_s=0.5,
                        alert_rules_file=rules)  # type: ignore[arg-type]
    try:
        with api_client(settings) as (client, keys), services(settings, tmp, "worker", "alerter") as procs:
            producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
            for topic, key, value in flood_messages(now_ms()):
                producer.produce(topic, value, key=key, headers=agency_headers(default_catalog(), topic, key))
            assert producer.flush(30) == 0
            yield Flood(client, keys)
            for p in procs:
                assert p.poll() is None, f"a pipeline process died (see {tmp})"
    finally:
        broker.terminate()
        broker.wait(timeout=10)


def _formed(flood: Flood) -> dict[str, Any] | None:
    """The flood incident once it holds the water level, the calls and the reports (the rescue report may
    come on its 5-minute cadence)."""
    floods = flood.get("/incidents", state="all", type="flood")
    if not floods:
        return None
    signals = set(floods[0]["signals"])
    return floods[0] if {"water_level", "emergency_calls", "citizen_reports"} <= signals else None


def test_a_flood_scenario_forms_one_incident_with_its_member_alerts(flood: Flood) -> None:
    inc = flood.wait(lambda: _formed(flood), "flood incident with three signals", timeout_s=120)
    incidents = flood.get("/incidents", state="all")
    assert len(incidents) == 1, [(i["type"], i["province"]) for i in incidents]  # one, and none for 01
    assert (inc["type"], inc["province"], inc["scope"], inc["state"], inc["severity"]) == (
        "flood", "46", "province", "open", "critical")
    assert inc["title_en"] == "Flooding – Hue"
    assert flood.get("/incidents", province="01") == []
    # its members are the province's firing alerts of the flood signals, each one in /alerts
    alerts = {a["alert_id"]: a for a in flood.get("/alerts", state="all", province="46")}
    members = {m["alert_id"]: m for m in inc["members"]}
    assert set(members) <= set(alerts) and len(members) >= 4
    assert {alerts[a]["rule_id"] for a in members} >= {"water_level_alarm", "hotline_calls_high",
                                                       "citizen_reports_high"}
    firing_flood_alerts = {a for a, x in alerts.items() if x["state"] == "firing" and x["rule_id"] in FLOOD_RULES
                           and x["rule_id"] != "hotline_calls_high" or
                           x["state"] == "firing" and x["dims"].get("line") in ("114", "115")}
    assert firing_flood_alerts <= set(members)
    assert all(alerts[a]["province"] == "46" for a in members)
    # the detail: members with their alerts, and a timeline that opens and gathers them
    detail = flood.get(f"/incidents/{inc['incident_id']}")
    assert {m["alert_id"] for m in detail["alerts"]} == set(members)
    assert all(m["alert"] and m["alert"]["alert_id"] == m["alert_id"] for m in detail["alerts"])
    events = [e["event"] for e in detail["timeline"]]
    assert events[0] == "opened" and events.count("alert_joined") >= len(members) - 1  # the opener: `opened`
    assert detail["timeline"][0]["alert_id"] not in {e["alert_id"] for e in detail["timeline"]
                                                      if e["event"] == "alert_joined"}
    assert [e["seq"] for e in detail["timeline"]] == list(range(1, len(events) + 1))


def test_incident_commands_go_through_the_alerter(flood: Flood) -> None:
    inc = flood.wait(lambda: _formed(flood), "flood incident", timeout_s=120)
    iid = inc["incident_id"]
    assert flood.post(f"/incidents/{iid}/ack", {"comment": "đã cử đội"}, role="viewer").status_code == 403
    assert flood.post(f"/incidents/{'0' * 16}/ack", {}).status_code == 404
    r = flood.post(f"/incidents/{iid}/ack", {"comment": "đã cử đội"})
    assert r.status_code == 202, r.text
    acked = r.json()["alerts_acknowledged"]  # its members still firing
    assert acked and set(acked) <= {m["alert_id"] for m in flood.get(f"/incidents/{iid}")["members"]}
    assert flood.post(f"/incidents/{iid}/assign", {"assignee": "đội cứu hộ Huế"}).status_code == 202
    assert flood.post(f"/incidents/{iid}/comments", {"comment": "nước đang lên"}).status_code == 202
    assert flood.post(f"/incidents/{iid}/comments", {"comment": ""}).status_code == 422

    def applied() -> dict[str, Any] | None:
        d = flood.get(f"/incidents/{iid}")
        return d if d["comments"] and d["assignee"] else None

    detail = flood.wait(applied, "ack, assignment and comment applied")
    assert detail["state"] == "acknowledged" and detail["ack"]["comment"] == "đã cử đội"
    assert detail["assignee"] == "đội cứu hộ Huế"
    assert [(c["comment"]) for c in detail["comments"]] == ["nước đang lên"]
    assert {"acknowledged", "assigned", "commented"} <= {e["event"] for e in detail["timeline"]}
    assert flood.post(f"/incidents/{iid}/ack", {}).status_code == 409  # acknowledged already
    # its firing alerts were acknowledged with it, naming the incident
    for alert_id in acked:
        a = flood.wait(lambda alert_id=alert_id: (x := flood.get(f"/alerts/{alert_id}"))["ack"] and x,
                       f"alert {alert_id} acknowledged with the incident")
        assert a["ack"]["comment"] == f"incident {iid}: đã cử đội" and a["ack"]["by"]
    audit = {(a["action"], a["target"]) for a in flood.get("/audit", role="admin")}
    assert {("incident.ack", iid), ("incident.assign", iid), ("incident.comment", iid)} <= audit
    assert {("alert.ack", alert_id) for alert_id in acked} <= audit


def test_alerts_take_an_assignee_and_comments(flood: Flood) -> None:
    inc = flood.wait(lambda: _formed(flood), "flood incident", timeout_s=120)
    alert_id = inc["members"][0]["alert_id"]
    assert flood.post(f"/alerts/{'f' * 16}/assign", {"assignee": "x"}).status_code == 404
    assert flood.post(f"/alerts/{alert_id}/assign", {"assignee": "trạm thủy văn"}).status_code == 202
    assert flood.post(f"/alerts/{alert_id}/comments", {"comment": "đã kiểm tra"}).status_code == 202
    got = flood.wait(lambda: (a := flood.get(f"/alerts/{alert_id}"))["comments"] and a["assignee"] and a,
                     "alert assignee and comment")
    assert got["assignee"] == "trạm thủy văn" and [c["comment"] for c in got["comments"]] == ["đã kiểm tra"]
    audit = {(a["action"], a["target"]) for a in flood.get("/audit", role="admin")}
    assert {("alert.assign", alert_id), ("alert.comment", alert_id)} <= audit
