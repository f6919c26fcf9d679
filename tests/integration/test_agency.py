"""Agency as a dimension of every reading (issue 15), on real parts: the API with its embedded sink, a broker, chDB.

/ingest publishes each reading with the key's agency as header `agency`; the sink stores it in readings.agency,
which /query reads like any column. GET /agencies lists the registry.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import register_secret
from tests.integration.api_client import api_client

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


def test_agencies_lists_the_registry(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        r = client.get("/agencies", headers=keys.header("viewer"))
        assert r.status_code == 200, r.text
        bodies = {b["id"]: b for b in r.json()}
    assert len([b for b in bodies.values() if b["type"] == "province"]) == 34
    assert bodies["ioc_79"] == {
        "id": "ioc_79", "type": "province", "name_vi": "Trung tâm Giám sát, điều hành đô thị thông minh Thành phố Hồ "
        "Chí Minh", "name_en": "Ho Chi Minh City intelligent operations center", "parent": "", "province": "79",
        "feeds": ["citizen_feedback"], "contact": "ioc-79@example.gov.vn"}
    assert (bodies["evn_nldc"]["type"], bodies["evn_nldc"]["parent"], bodies["evn_nldc"]["feeds"]) == (
        "corporation", "evn", ["electricity_load"])
    assert all(b["parent"] in bodies for b in bodies.values() if b["parent"])
