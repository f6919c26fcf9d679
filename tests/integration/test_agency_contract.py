"""Done-when of issue 15's contracts, end to end on real parts (Tansu, the worker, alerter and notifier as processes,
the API with its embedded sink on chDB, a real webhook receiver): the simulator's `silent` incident for one body
(hydromet) lowers that body's daily quality score and raises a contract alert through the one alert engine, while
the other body sending beside it (evn_nldc) keeps its score and raises none.

Event time keeps it short without faking anything: the simulator plays hour A (every body sending) and hour B
(hydromet silent) at full speed with their own timestamps, then keeps sending live.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from api.agencies_sql import vn_day
from controlroom.catalog import default_catalog
from controlroom.schema import agency_headers
from producers.simulator import Simulator, parse_incident
from tests.conftest import register_secret
from tests.integration.api_client import api_client
from tests.integration.pipeline import poll, services
from tests.integration.receivers import http_receiver

pytestmark = pytest.mark.integration

HOUR = 3_600_000
FEEDS = ("water_level", "electricity_load")  # hydromet's and evn_nldc's contracts
RULES = """
rules:
  - id: contract_breach
    version: 1
    type: contract
    feed: "*"
    severity: warning
    agencies: [hydromet, evn_nldc]
    params: {min_completeness_pct: 90, cadences: 2, min_silence_s: 60}
    summary: {vi: "Vi phạm cam kết: {agency_vi} – {feed_vi}", en: "Contract breached: {agency_en} – {feed_en}"}
"""


def hours_of_one_day(now: int) -> tuple[int, int]:
    """Hours A and B: the two whole hours before this one, moved one earlier if they straddle a Vietnamese midnight."""
    a = now // HOUR * HOUR - 2 * HOUR
    if vn_day(a) != vn_day(a + HOUR):
        a -= HOUR
    return a, a + HOUR


def test_a_silent_agency_loses_score_and_raises_a_contract_alert(broker: str, make_settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    signing_key = secrets.token_hex(32)
    register_secret(signing_key)
    settings = make_settings(kafka_bootstrap=broker, sink_flush_interval_s=0.3, allowed_lateness_s=1.0,
                             idle_advance_after_s=1.0, live_interval_s=0.2, alerter_tick_s=0.5,
                             stream_batch_within_s=0.05, alert_rules_file=rules, notify_backoff_s=0.2,
                             notify_signing_key=signing_key)
    catalog = default_catalog()
    two = dataclasses.replace(catalog, feeds={f: catalog.feeds[f] for f in FEEDS})
    start = int(time.time() * 1000)
    a, b = hours_of_one_day(start)
    day = vn_day(a)
    silent = parse_incident(f"silent:agency=hydromet,start={datetime.fromtimestamp(b / 1000, UTC).isoformat()},"
                            f"duration=86400", start)
    sim = Simulator(two, seed=15, start_ms=a, incidents=[silent])
    producer = Producer({"bootstrap.servers": broker, "linger.ms": 5})

    def publish(until_ms: int) -> int:
        msgs = sim.between(publish.at, until_ms)  # type: ignore[attr-defined]
        publish.at = until_ms  # type: ignore[attr-defined]
        for topic, key, value in msgs:
            producer.produce(topic, value, key=key, headers=agency_headers(catalog, topic, key))
        assert producer.flush(30) == 0
        return len(msgs)

    publish.at = a  # type: ignore[attr-defined]
    with api_client(settings) as (client, keys), http_receiver() as receiver, \
            services(settings, tmp_path, "worker"):

        def day_score(agency: str) -> dict[str, Any] | None:
            r = client.get(f"/agencies/{agency}", params={"days": 3}, headers=keys.header("viewer"))
            assert r.status_code == 200, r.text
            return next((h for h in r.json()["history"] if h["day"] == day), None)

        sent_a = publish(b)
        before = poll(lambda: (s := day_score("hydromet")) and s["score"] > 99.5 and s, "hour A scored")
        print(f"hour A: {sent_a} readings; hydromet's score for {day}: {before['score']:.1f}")
        r = client.post("/subscriptions", headers=keys.header("admin"), json={
            "name": "trực ban dữ liệu", "channel": "webhook", "target": receiver.url("/duty"), "tier": "primary",
            "filters": {"feeds": ["water_level"], "min_severity": "warning"}, "group_by": ["..."],
            "group_wait_s": 0, "group_interval_s": 1})
        assert r.status_code == 201, r.text
        sent_b = publish(int(time.time() * 1000))  # hour B and on: hydromet silent, evn_nldc sending
        live_from = int(time.time() * 1000)

        def worker_caught_up() -> bool:  # hour B's windows closed: the alerter starts with evn_nldc heard of lately
            publish(int(time.time() * 1000))
            rows = client.post("/query", json={"sql": "SELECT toUnixTimestamp64Milli(max(window_start)) AS t FROM "
                                                      "agg_1m WHERE feed = 'electricity_load'"},
                               headers=keys.header("viewer")).json()["rows"]
            return bool(rows and rows[0][0] and rows[0][0] >= live_from - 3 * 60_000)

        poll(worker_caught_up, "the worker through hour B", timeout_s=120)
        with services(settings, tmp_path, "alerter", "notifier"):
            began = time.monotonic()

            def breach() -> dict[str, Any] | None:
                publish(int(time.time() * 1000))  # live
                alerts = client.get("/alerts", params={"state": "all"},
                                    headers=keys.header("viewer")).json()
                return next((x for x in alerts if x["state"] == "firing" and x["dims"] == {"agency": "hydromet"}),
                            None)

            alert = poll(breach, "the contract alert", timeout_s=240)
            print(f"hour B and live: {sent_b}+ readings; contract alert firing after {time.monotonic() - began:.0f} s")
            hit = poll(lambda: next((h for h in receiver.at("/duty") if alert["alert_id"] in h.body.decode()), None),
                       "the webhook of the contract alert", timeout_s=30)
            others = client.get("/alerts", params={"state": "all"},
                                headers=keys.header("viewer")).json()
        after = poll(lambda: (s := day_score("hydromet")) and s["contract_hours"] >= 2 and s, "hour B scored")
        steady = day_score("evn_nldc")
        listed = {x["id"]: x for x in client.get("/agencies", headers=keys.header("viewer")).json()}
    print(f"hydromet {day}: {before['score']:.1f} → {after['score']:.1f} over {after['contract_hours']} contract-hours;"
          f" evn_nldc {steady['score'] if steady else None}")
    assert (alert["feed"], alert["province"], alert["dims"]) == ("water_level", "", {"agency": "hydromet"})
    assert alert["summary_en"] == "Contract breached: Hydro-Meteorological Department – River water level"
    assert alert["evidence"]["series_silent"] == alert["evidence"]["series_judged"] == 68
    assert [x["dims"]["agency"] for x in others] == ["hydromet"]  # evn_nldc kept its contract: no alert
    delivered = orjson.loads(hit.body)["delivers"]
    assert any(d["alert_id"] == alert["alert_id"] and d["event"] == "firing" for d in delivered)
    # hour A: 100; hour B silent: 0 (nothing reported, no volume); later hours of the day add no more than 0
    assert before["score"] == pytest.approx(100, abs=0.5)
    assert after["score"] <= 50 + 1e-6
    assert steady is not None and steady["score"] > 95
    assert listed["hydromet"]["contracts"][0]["feed"] == "water_level"
