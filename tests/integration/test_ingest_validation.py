"""POST /ingest rejects the inputs issue 11 found accepted (and a commune outside the reading's province), naming
reason and field, and dead-letters them."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


async def read_dlq(broker: str, n: int) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer("feeds.dlq", bootstrap_servers=broker, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    try:
        while len(out) < n and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=300)).values():
                out.extend(orjson.loads(r.value) for r in recs)
    finally:
        await consumer.stop()
    return out


async def test_ingest_rejects_blank_ids_old_times_and_closed_dim_values(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    ok = {"event_id": "iv-ok", "feed": "water_level", "province": "01", "ts": now - 1_000, "value": 420,
          "dims": {"station": "s1"}, "source": "hydro-01"}
    dossiers = {**ok, "feed": "dvc_dossiers_resolved", "value": 5, "dims": {"on_time": "true"}}
    batch = [
        ok,
        {**ok, "event_id": ""},
        {**ok, "event_id": "   "},
        {**ok, "event_id": " iv-pad "},
        {**ok, "event_id": "e" * 129},
        {**ok, "event_id": "iv-1969", "ts": -1},
        {**ok, "event_id": "iv-old", "ts": now - 3 * DAY_MS},  # MAX_PAST_S is 2 days in this test
        # a feed this agency may not send: validation answers before the agency's scope does
        {**dossiers, "event_id": "iv-maybe", "dims": {"on_time": "maybe"}},
        # a commune of another province (Phường Bến Thành is in 79): the same verdict as the worker's
        {**ok, "event_id": "iv-commune-79", "dims": {"station": "s1", "commune": "26743"}},
        {**ok, "event_id": "e" * 128},  # the edges that pass
        {**ok, "event_id": "iv-edge-old", "ts": now - 2 * DAY_MS + 60_000},
        {**ok, "event_id": "iv-new-station", "dims": {"station": "s9"}},
        {**ok, "event_id": "iv-upper-station", "dims": {"station": "S1"}},  # open: taken as sent
        {**ok, "event_id": "iv-commune", "dims": {"station": "s1", "commune": "00070"}},  # Phường Hoàn Kiếm, Hà Nội
    ]
    settings = make_settings(kafka_bootstrap=broker, embedded_sink=False, max_past_s=2 * 86_400.0)
    with api_client(settings) as (client, keys):
        r = client.post("/ingest", json=batch, headers=keys.header("agency"))
        assert r.status_code == 200, r.text
        got = [(x["status"], x["reason"], x["field"]) for x in r.json()["results"]]
    rejected = [("rejected", "wrong_type", "event_id")] * 4 + [
        ("rejected", "too_old", "ts"), ("rejected", "too_old", "ts"),
        ("rejected", "unknown_dim_value", "dims.on_time"), ("rejected", "unknown_dim_value", "dims.commune")]
    assert got == [("accepted", None, None), *rejected] + [("accepted", None, None)] * 5
    dead = await read_dlq(broker, len(rejected))
    assert sorted((d["reason"], d["field"]) for d in dead) == sorted((x[1], x[2]) for x in rejected)
