"""Province-scoped keys on the read side (api/scope.py): the role × endpoint matrix's scope dimension. A viewer or
operator key for provinces 01 and 79 sees only those provinces (and national figures, 00) in /series, /overview,
/alerts, /incidents, /query, the wall's stream and /alerts/stream; a national key sees the others too. Data is written
through the sink's own write path into real chDB; the asserts are on what comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from fastapi.testclient import TestClient

from controlroom.catalog import default_catalog
from controlroom.schema import ALERTS_TOPIC, INCIDENTS_TOPIC, alert_message, fingerprint, incident_message
from controlroom.settings import Settings
from sinks.rows import Record
from sinks.writer import SinkWriter
from tests.conftest import register_secret
from tests.integration.api_client import api_client
from tests.integration.pipeline import sent_record

pytestmark = pytest.mark.integration

SCOPE = {"01", "79"}
SEEN = SCOPE | {"00"}  # national figures are no province's: every key sees them
OTHERS = {"48", "31"}


def alert(province: str, seq: int = 1) -> dict[str, Any]:
    fp = fingerprint("water_level_alarm", "water_level", province, "station=s1")
    return dict(alert_message(
        fingerprint_=fp, rule_id="water_level_alarm", rule_version=1, rule_type="threshold", severity="critical",
        event="firing", state="firing", seq=seq, feed="water_level", province=province, dims={"station": "s1"},
        summary_vi="Mực nước vượt báo động III", summary_en="Water level above alarm level III", value=812.0,
        evidence={"threshold": 800.0}, starts_at_ms=int(time.time() * 1000) - 60_000, ends_at_ms=None,
        event_at_ms=int(time.time() * 1000)))


def incident(province: str) -> dict[str, Any]:
    now = int(time.time() * 1000)
    return dict(incident_message(
        incident_id=f"{int(province):016x}", seq=1, type_id="flood", type_version=1, scope="province",
        province=province,
        severity="critical", event="opened", state="open", title_vi="Lũ", title_en="Flood", members=[],
        opened_at_ms=now - 60_000, resolved_at_ms=None, event_at_ms=now))


def seed(settings: Settings, client: TestClient) -> None:
    now = int(time.time() * 1000)
    items: list[tuple[str, bytes]] = []
    for i, province in enumerate(sorted(SCOPE | OTHERS)):
        for j in range(2):
            items.append(("feeds.water_level", orjson.dumps({
                "event_id": f"w-{province}-{j}", "feed": "water_level", "province": province, "ts": now - 30_000 + j,
                "value": 100 + i, "dims": {"station": "s1"}, "source": "test"})))
        items.append((ALERTS_TOPIC, orjson.dumps(alert(province))))
        items.append((INCIDENTS_TOPIC, orjson.dumps(incident(province))))
    items.append(("feeds.vn_index", orjson.dumps({"event_id": "vn-1", "feed": "vn_index", "province": "00",
                                                  "ts": now - 30_000, "value": 1250.0, "dims": {}, "source": "t"})))
    sink = SinkWriter(settings, default_catalog(), client.app.state.api.warehouse)  # type: ignore[attr-defined]
    sink.write([sent_record(topic, 0, i, now, value) if topic.startswith("feeds.") else Record(topic, 0, i, now, value)
                for i, (topic, value) in enumerate(items)])


def scoped_keys(client: TestClient) -> dict[str, dict[str, str]]:
    store = client.app.state.api.security.keys  # type: ignore[attr-defined]
    out = {}
    for role in ("viewer", "operator"):
        key, _ = store.create(name=f"scoped-{role}", role=role, created_by="test", provinces=sorted(SCOPE))
        register_secret(key.token)
        out[role] = {"Authorization": f"Bearer {key.token}"}
    return out


def sse_data(client: TestClient, path: str, headers: dict[str, str], event: str) -> dict[str, Any]:
    """The first `event` frame's data of an SSE stream."""
    with client.stream("GET", path, headers=headers) as resp:
        assert resp.status_code == 200
        name = ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:") and name == event:
                return dict(orjson.loads(line[5:]))
    raise AssertionError(f"no {event} event on {path}")


@pytest.fixture()
def scoped(make_settings) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], dict[str, str]]]:  # type: ignore[no-untyped-def]
    settings = make_settings(embedded_sink=False, wall_refresh_s=0.2, overview_refresh_s=0.0)
    with api_client(settings) as (client, keys):
        seed(settings, client)
        yield client, scoped_keys(client), keys.header("viewer")


def test_series_overview_alerts_incidents_and_wall_show_only_the_keys_provinces(scoped) -> None:  # type: ignore[no-untyped-def]
    client, scoped_headers, national = scoped
    for role, h in scoped_headers.items():
        # /series: another province's readings are not there; its own are
        for province, n in (("01", 2), ("79", 2), ("48", 0), ("31", 0)):
            points = client.get("/series", params={"feed": "water_level", "province": province, "step": 3600},
                                headers=h).json()["points"]
            assert sum(p["count"] for p in points) == n, (role, province)
        everything = client.get("/series", params={"feed": "water_level", "step": 3600}, headers=h).json()["points"]
        assert sum(p["count"] for p in everything) == 4, role
        # /overview: its provinces only, and only their readings counted
        ov = client.get("/overview", headers=h).json()
        assert {p["code"] for p in ov["provinces"]} == SCOPE, role
        assert {p["code"] for p in ov["provinces"] if p["last_ts"]} == SCOPE
        assert ov["totals"]["readings_5m"] == 4 + 1, role  # four in 01/79, and the national index
        # /alerts and one alert: its provinces' only
        alerts = client.get("/alerts", headers=h).json()
        assert {a["province"] for a in alerts} == SCOPE, role
        ids = {a["province"]: a["alert_id"] for a in client.get("/alerts", headers=national).json()}
        assert client.get(f"/alerts/{ids['48']}", headers=h).status_code == 404
        assert client.get(f"/alerts/{ids['48']}/cap", headers=h).status_code == 404
        assert client.get(f"/alerts/{ids['79']}/cap", headers=h).status_code == 200
        assert client.get(f"/alerts/{ids['79']}", headers=h).json()["province"] == "79"
        # /incidents
        assert {i["province"] for i in client.get("/incidents", headers=h).json()} == SCOPE, role
        assert client.get(f"/incidents/{48:016x}", headers=h).status_code == 404
        assert client.get(f"/incidents/{1:016x}", headers=h).json()["province"] == "01"
        # the wall's stream: a snapshot of its provinces, its alerts
        wall = sse_data(client, "/wall/stream", h, "wall")
        assert {p["code"] for p in wall["provinces"]} == SCOPE
        assert {a["province"] for a in wall["alerts"]} == SCOPE and wall["alerts_firing"] == 2
        # a province page: its own provinces only; another's is not there for it
        page = sse_data(client, "/wall/stream?province=79", h, "province")
        assert page["province"]["code"] == "79" and {a["province"] for a in page["alerts"]} == {"79"}
        assert client.get("/wall/stream?province=48", headers=h).status_code == 404
    # the operator cannot acknowledge another province's alert either (it is not there for it)
    r = client.post(f"/alerts/{ids['48']}/ack", json={"comment": "x"}, headers=scoped_headers["operator"])
    assert r.status_code == 404
    # a national key sees every province
    assert {a["province"] for a in client.get("/alerts", headers=national).json()} == SCOPE | OTHERS
    assert {i["province"] for i in client.get("/incidents", headers=national).json()} == SCOPE | OTHERS
    assert len(client.get("/overview", headers=national).json()["provinces"]) == 34
    wall = sse_data(client, "/wall/stream", national, "wall")
    assert len(wall["provinces"]) == 34 and wall["alerts_firing"] == 4
    points = client.get("/series", params={"feed": "water_level", "step": 3600}, headers=national).json()["points"]
    assert sum(p["count"] for p in points) == 8


def test_query_of_a_scoped_key_reads_its_provinces_only(scoped) -> None:  # type: ignore[no-untyped-def]
    client, scoped_headers, national = scoped

    def q(sql: str, h: dict[str, str]) -> Any:
        return client.post("/query", json={"sql": sql}, headers=h)

    for h in scoped_headers.values():
        assert q("SELECT DISTINCT province FROM readings ORDER BY province", h).json()["rows"] == [
            ["00"], ["01"], ["79"]]
        assert q("SELECT province, count() FROM alerts_current GROUP BY province ORDER BY province", h).json()[
            "rows"] == [["01", 1], ["79", 1]]
        # joins and subqueries read the same views
        joined = q("SELECT p.code FROM provinces AS p INNER JOIN (SELECT DISTINCT province FROM incidents_current) "
                   "AS i ON i.province = p.code ORDER BY p.code", h).json()
        assert joined["rows"] == [["01"], ["79"]]
        assert q("SELECT count() FROM (SELECT * FROM readings WHERE province = '48')", h).json()["rows"] == [[0]]
        assert q("SELECT count() FROM provinces", h).json()["rows"] == [[34]]  # the reference, whole
        # the project's tables themselves, and what has no province, are not for this key
        for sql, named in (("SELECT count() FROM controlroom.readings", "controlroom.readings"),
                           ("SELECT * FROM controlroom.alerts_current", "controlroom.alerts_current"),
                           ("SELECT * FROM controlroom_admin.api_keys", "controlroom_admin.api_keys")):
            r = q(sql, h)
            assert r.status_code == 403 and named in r.json()["detail"], r.text
        assert q("SELECT count() FROM delivery_attempts", h).json()["rows"] == [[0]]  # no province: empty for it
    assert q("SELECT DISTINCT province FROM readings ORDER BY province", national).json()["rows"] == [
        ["00"], ["01"], ["31"], ["48"], ["79"]]
    # a scope database is not the national key's either
    r = q("SELECT count() FROM controlroom_p_01_79.readings", national)
    assert r.status_code == 403, r.text
    # a scope's database is named by its codes: a key with anything else is refused when made (CLI or API)
    store = client.app.state.api.security.keys  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="not province codes"):
        store.create(name="bad", role="viewer", created_by="test", provinces=["1"])


def test_alerts_stream_of_a_scoped_key_carries_its_provinces_only(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(kafka_bootstrap=broker, embedded_sink=False)) as (client, keys):
        h = scoped_keys(client)["viewer"]
        fanout = client.app.state.api.alert_fanout  # type: ignore[attr-defined]
        got: dict[str, list[str]] = {"scoped": [], "national": []}
        with client.stream("GET", "/alerts/stream", headers=h) as scoped_resp, \
                client.stream("GET", "/alerts/stream", headers=keys.header("viewer")) as national_resp:
            deadline = time.monotonic() + 20
            while not fanout.ready.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fanout.ready.is_set()
            producer = Producer({"bootstrap.servers": broker})
            for province in ("48", "01", "31", "79"):  # the scoped stream skips 48 and 31
                producer.produce(ALERTS_TOPIC, orjson.dumps(alert(province)))
            assert producer.flush(10) == 0
            for name, resp, n in (("scoped", scoped_resp, 2), ("national", national_resp, 4)):
                for line in resp.iter_lines():
                    if line.startswith("data:"):
                        got[name].append(orjson.loads(line[5:])["province"])
                        if len(got[name]) == n:
                            break
    # (the topic's partitions give no order across provinces)
    assert {k: sorted(v) for k, v in got.items()} == {"scoped": ["01", "79"], "national": ["01", "31", "48", "79"]}


def test_a_scoped_operator_silences_and_sees_only_silences_of_its_provinces(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    """A silence without a province matcher holds back every province's alerts: a national key's. A scoped
    operator must name one of its provinces, may end only such silences, and its keys list only the silences that
    can hold back their alerts (its provinces', and national ones)."""
    settings = make_settings(kafka_bootstrap=broker, embedded_sink=False)
    with api_client(settings) as (client, keys):
        scoped_headers, national = scoped_keys(client), keys.header("viewer")
        admin = keys.header("admin")
        op = scoped_headers["operator"]
        for matchers in ({"province": "48"}, {"rule_id": "water_level_alarm"}):  # another province; every province
            r = client.post("/silences", json={"matchers": matchers, "duration_s": 600}, headers=op)
            assert r.status_code == 403 and "give matchers.province" in r.json()["detail"], r.text
        own = client.post("/silences", json={"matchers": {"province": "79"}, "duration_s": 600}, headers=op)
        assert own.status_code == 201, own.text
        other = client.post("/silences", json={"matchers": {"province": "48"}, "duration_s": 600},
                            headers=admin).json()
        everywhere = client.post("/silences", json={"matchers": {"feed": "water_level"}, "duration_s": 600},
                                 headers=admin).json()
        listed = {s["id"] for s in client.get("/silences", headers=scoped_headers["viewer"]).json()}
        assert listed == {own.json()["id"], everywhere["id"]}  # what can hold back its alerts; not 48's
        assert client.delete(f"/silences/{other['id']}", headers=op).status_code == 403
        assert client.delete(f"/silences/{everywhere['id']}", headers=op).status_code == 403
        assert client.delete(f"/silences/{own.json()['id']}", headers=op).status_code == 200
        assert {s["id"] for s in client.get("/silences", headers=national).json()} == {other["id"], everywhere["id"]}
