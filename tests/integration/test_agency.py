"""Agency as a dimension of every reading (issue 15), on real parts: the API with its embedded sink, a broker, chDB.

/ingest publishes each reading with the key's agency as header `agency`; the sink stores it in readings.agency,
which /query reads like any column. GET /agencies lists the registry.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlroom.catalog import Catalog
from controlroom.contracts import hour_quality, volume_share
from sinks.rows import AGG, DEAD
from tests.conftest import register_secret
from tests.integration.api_client import api_client
from tests.integration.test_contract_measures import insert, window_row

pytestmark = pytest.mark.integration


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_ingest_records_the_keys_agency(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(kafka_bootstrap=broker, sink_flush_interval_s=0.3)
    ts = now_iso()
    water = {"event_id": "ag-w", "feed": "water_level", "province": "01", "ts": ts, "value": 420,
             "dims": {"station": "s1"}, "source": "hydro-01"}
    citizen = {"event_id": "ag-c", "feed": "citizen_feedback", "province": "79", "ts": ts, "value": 3,
               "dims": {"topic": "traffic"}, "source": "ioc-app"}
    with api_client(settings) as (client, keys):
        store = client.app.state.api.security.keys  # type: ignore[attr-defined]
        ioc, _ = store.create(name="ioc-79", role="agency", created_by="test", agency="ioc_79")
        register_secret(ioc.token)
        ioc_header = {"Authorization": f"Bearer {ioc.token}"}
        assert client.post("/ingest", json=[water], headers=keys.header("agency")).json()["accepted"] == 1
        r = client.post("/ingest", json=[citizen, {**citizen, "event_id": "ag-c01", "province": "01"}],
                        headers=ioc_header).json()
        # a province's center sends its own province only
        assert [(x["status"], x["reason"], x["field"]) for x in r["results"]] == [
            ("accepted", None, None), ("rejected", "not_allowed", "province")]

        def stored() -> list[list[Any]]:
            out = client.post("/query", json={"sql": "SELECT event_id, feed, agency FROM readings ORDER BY event_id"},
                              headers=keys.header("viewer"))
            assert out.status_code == 200, out.text
            return out.json()["rows"]  # type: ignore[no-any-return]

        deadline = time.monotonic() + 60
        while len(stored()) < 2 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert stored() == [["ag-c", "citizen_feedback", "ioc_79"], ["ag-w", "water_level", "hydromet"]]
        # the refused reading is dead-lettered charged to the key's agency (the validity of its contract)
        dead = client.post("/query", json={"sql": "SELECT reason, agency FROM dead_letters"},
                           headers=keys.header("viewer")).json()["rows"]
        assert dead == [["not_allowed", "ioc_79"]]


def test_agencies_lists_the_registry(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        r = client.get("/agencies", headers=keys.header("viewer"))
        assert r.status_code == 200, r.text
        bodies = {b["id"]: b for b in r.json()}
    assert len([b for b in bodies.values() if b["type"] == "province"]) == 34
    registry_fields = ("id", "type", "name_vi", "name_en", "parent", "province", "feeds", "contact")
    assert {k: bodies["ioc_79"][k] for k in registry_fields} == {
        "id": "ioc_79", "type": "province", "name_vi": "Trung tâm Giám sát, điều hành đô thị thông minh Thành phố Hồ "
        "Chí Minh", "name_en": "Ho Chi Minh City intelligent operations center", "parent": "", "province": "79",
        "feeds": ["citizen_feedback"], "contact": "ioc-79@example.gov.vn"}
    assert bodies["ioc_79"]["score_today"] is None  # nothing received yet: nothing judged
    assert [c["feed"] for c in bodies["ioc_79"]["contracts"]] == ["citizen_feedback"]
    assert (bodies["evn_nldc"]["type"], bodies["evn_nldc"]["parent"], bodies["evn_nldc"]["feeds"]) == (
        "corporation", "evn", ["electricity_load"])
    assert all(b["parent"] in bodies for b in bodies.values() if b["parent"])


def _windows(feed: str, series: list[tuple[str, str]], start_ms: int, minutes: int, per_window: int,
             agency: str) -> list[dict[str, Any]]:
    start = datetime.fromtimestamp(start_ms / 1000, UTC)
    return [window_row(feed, province, dkey, start + timedelta(minutes=m), per_window, agency)
            for province, dkey in series for m in range(minutes)]


def test_agencies_show_contracts_and_todays_score(make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    """Half an hour of this hour: hydromet delivers its whole contract, Ho Chi Minh City's center half of its series at
    half the volume with dead letters, everybody else nothing. The scores are the formula's; a key scoped to 79 sees
    its own center's score and not the national bodies'."""
    hour_ms = int(time.time()) // 3600 * 3600 * 1000
    water, hcmc = catalog.contracts["hydromet/water_level"], catalog.contracts["ioc_79/citizen_feedback"]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        wh = client.app.state.api.warehouse  # type: ignore[attr-defined]
        insert(wh, AGG, _windows("water_level", list(water.series), hour_ms, 30, 1, "hydromet")
               + _windows("citizen_feedback", list(hcmc.series[:2]), hour_ms, 30, 2, "ioc_79"))
        insert(wh, DEAD, [{"dlq_id": f"d{i}", "reason": "out_of_range", "feed": "citizen_feedback", "agency": "ioc_79",
                           "received_at": datetime.fromtimestamp(hour_ms / 1000 + i, UTC)} for i in range(10)])
        store = client.app.state.api.security.keys  # type: ignore[attr-defined]
        scoped, _ = store.create(name="viewer-79", role="viewer", created_by="test", provinces=["79"])
        register_secret(scoped.token)
        listed = {b["id"]: b for b in client.get("/agencies", headers=keys.header("viewer")).json()}
        mine = {b["id"]: b for b in client.get("/agencies", headers={"Authorization": f"Bearer {scoped.token}"}).json()}
        detail = client.get("/agencies/ioc_79", headers=keys.header("viewer")).json()
        missing = client.get("/agencies/nobody", headers=keys.header("viewer"))
    assert listed["hydromet"]["score_today"] == pytest.approx(100)
    contract = listed["hydromet"]["contracts"][0]
    assert {k: contract[k] for k in ("feed", "series", "provinces", "cadence_s", "readings_per_hour",
                                     "timeliness_pct")} == {
        "feed": "water_level", "series": 68, "provinces": 34, "cadence_s": 60.0,
        "readings_per_hour": [pytest.approx(3264), pytest.approx(5100)], "timeliness_pct": 99.5}
    assert contract["today"]["readings"] == 68 * 30 and contract["today"]["hours"] == 1
    readings = 2 * 30 * 2
    expected = hour_quality(0.5, 1.0, readings / (readings + 10), volume_share(readings, hcmc.per_hour_min / 2,
                                                                             hcmc.per_hour_max / 2), 99)
    assert listed["ioc_79"]["score_today"] == pytest.approx(expected)
    assert listed["ioc_79"]["worst_contract"] == "citizen_feedback"
    assert listed["moh"]["score_today"] == 0  # silent all along: nothing reported, no volume
    assert detail["history"][0]["score"] == pytest.approx(expected) and len(detail["history"]) == 1
    assert detail["contracts"][0]["today"]["completeness"] == 0.5 and detail["contracts"][0]["today"]["dead"] == 10
    assert missing.status_code == 404 and "unknown agency 'nobody'" in missing.json()["detail"]
    # a key for 79: its own center's figures; the national bodies' span provinces it may not read
    assert mine["ioc_79"]["score_today"] == pytest.approx(expected)
    assert mine["hydromet"]["score_today"] is None and mine["hydromet"]["contracts"][0]["today"] is None
