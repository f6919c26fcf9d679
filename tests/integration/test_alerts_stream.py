"""GET /alerts/stream relays alert events from topic `alerts` to clients as Server-Sent Events."""

from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import Producer

from controlroom.schema import ALERTS_TOPIC, AlertEvent, alert_message, fingerprint
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration


def event(severity: str, seq: int, province: str) -> AlertEvent:
    fp = fingerprint("water_level_alarm", "water_level", province, "station=s1")
    return alert_message(fingerprint_=fp, rule_id="water_level_alarm", rule_version=1, rule_type="threshold",
                         severity=severity, event="firing", state="firing", seq=seq, feed="water_level",
                         province=province, dims={"station": "s1"}, summary_vi="Mực nước vượt báo động III",
                         summary_en="Water level above alarm level III", value=812.0,
                         evidence={"threshold": 800.0}, starts_at_ms=1, ends_at_ms=None, event_at_ms=2)


def test_stream_relays_filtered_events_as_sse(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(kafka_bootstrap=broker, embedded_sink=False)) as (client, keys):
        assert client.get("/alerts/stream").status_code == 401
        with client.stream("GET", "/alerts/stream?severity=warning", headers=keys.header("viewer")) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            assert next(lines) == "retry: 3000"
            fanout = client.app.state.api.alert_fanout  # type: ignore[attr-defined]
            deadline = time.monotonic() + 20
            while not fanout.ready.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert fanout.ready.is_set()
            producer = Producer({"bootstrap.servers": broker})
            for e in (event("info", 1, "01"), event("critical", 7, "79")):  # info is below the filter
                producer.produce(ALERTS_TOPIC, orjson.dumps(e))
            assert producer.flush(10) == 0
            frame: list[str] = []
            for line in lines:
                if line.startswith(("id:", "event:", "data:")):
                    frame.append(line)
                if line.startswith("data:"):
                    break
    critical = event("critical", 7, "79")
    assert frame == [f"id: {critical['alert_id']}:7", "event: firing", "data: " + orjson.dumps(critical).decode()]
