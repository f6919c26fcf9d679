"""Restarts and inhibition on the real pipeline: Tansu broker, streams worker and alerter as processes, the API
with its embedded sink on chDB (as tests/integration/test_alerting.py).

1. Inhibition: a feed-wide staleness alert (scope: feed) mutes the per-series ones of its feed; GET /alerts
   says which alert inhibits them; when the feed comes back, a series still silent is notified (a repeat).
2. The restart storm (issue 13): readings flow for every series of a 10 s feed, then Control Room (worker
   and alerter) is down for longer than the feed's staleness limit while agencies cannot deliver; after the
   restart readings flow again within their cadence: no connection_lost (nor data_quality) event for those
   series; a threshold crossed ~20 s after the restart is judged live, on its open window.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from controlroom.broker import start_tansu, stop_process
from controlroom.catalog import default_catalog
from controlroom.schema import agency_headers
from controlroom.settings import Settings
from tests.conftest import free_port
from tests.integration.api_client import api_client
from tests.integration.pipeline import reading, start_service
from tests.integration.receivers import http_receiver
from tests.integration.test_alerting import Pipeline, now_ms, wait_until

pytestmark = pytest.mark.integration

FAST = "dvc_portal_visits"  # every 10 s, one series per province
LIMIT_S = 30  # its staleness limit here: 3 cadences
DOWN_S = 50  # Control Room's downtime in the restart test: longer than the limit
RULES = f"""
rules:
  - id: r_lost
    version: 1
    type: staleness
    feed: {FAST}
    severity: warning
    params: {{cadences: 3, min_silence_s: {LIMIT_S}}}
  - id: r_quality
    version: 1
    type: data_quality
    feed: {FAST}
    severity: warning
    params: {{limit_pct: 1, period_s: 300, min_total: 10, count: both}}
  - id: r_water
    version: 1
    type: threshold
    feed: water_level
    severity: warning
    provinces: ["31"]
    params: {{metric: max, above: 500}}
  # inhibition: dvc_dossiers_received in 22 and 24 (2 levels each: 4 series) is never sent at first
  - id: r_dossier_lost
    version: 1
    type: staleness
    feed: dvc_dossiers_received
    severity: warning
    provinces: ["22", "24"]
    params: {{cadences: 0.1, min_silence_s: 20}}
  - id: r_dossier_down
    version: 1
    type: staleness
    feed: dvc_dossiers_received
    severity: warning
    provinces: ["22", "24"]
    params: {{cadences: 0.1, min_silence_s: 20, scope: feed, min_silent_pct: 50}}
"""
INHIBIT = """
inhibit:
  - id: dossiers_down_mutes_series
    source: {rule: r_dossier_down}
    target: {rule_type: staleness}
    equal: [feed]
"""


class Flow:
    """Readings every 2 s for every series of the fast feed, while `on` (a thread; the agencies)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.provinces = default_catalog().series_provinces(default_catalog().feeds[FAST])
        self.on = threading.Event()
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "linger.ms": 5})
        while not self.stop.is_set():
            if self.on.is_set():
                ts = now_ms()
                for p in self.provinces:
                    self.sent += 1
                    producer.produce(f"feeds.{FAST}", reading(f"flow-{self.sent}", FAST, p, ts, 5.0), key=p.encode(),
                                     headers=agency_headers(default_catalog(), f"feeds.{FAST}", p.encode()))
                producer.flush(5)
            time.sleep(2.0)


class Stack:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings, self.tmp = settings, tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, *names: str) -> None:
        for name in names:
            self.procs[name] = start_service(name, self.settings, self.tmp / f"{name}.log")

    def stop(self, *names: str) -> None:
        for name in names:
            self.procs[name].terminate()  # all at once, then wait for each
        for name in names:
            stop_process(self.procs[name], 20.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, Stack, Flow]]:
    tmp = tmp_path_factory.mktemp("restart")
    port = free_port()
    broker = start_tansu(port, tmp / "tansu.log")
    (tmp / "rules.yaml").write_text(RULES)
    (tmp / "inhibit.yaml").write_text(INHIBIT)
    settings = Settings(data_dir=tmp / "data", clickhouse_url=f"chdb://{tmp / 'warehouse'}",  # type: ignore[arg-type]
                        kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=False, log_format="console",
                        topic_partitions=2, allowed_lateness_s=1.0, idle_advance_after_s=1.0, live_interval_s=0.2,
                        alerter_tick_s=0.5, alert_rules_file=tmp / "rules.yaml",
                        alert_inhibit_file=tmp / "inhibit.yaml")
    s = Stack(settings, tmp)
    flow = Flow(settings)
    try:
        with api_client(settings) as (client, keys), http_receiver() as receiver:
            s.start("worker", "alerter")
            flow.on.set()  # the fast feed reports from the start
            yield Pipeline(settings, client, keys, Producer({"bootstrap.servers": settings.kafka_bootstrap,
                                                             "linger.ms": 1}), receiver), s, flow
            for name, p in s.procs.items():
                assert p.poll() is None, f"{name} died (see {tmp})"
    finally:
        flow.stop.set()
        flow.thread.join(timeout=10)
        s.stop(*[name for name, p in s.procs.items() if p.poll() is None])
        broker.terminate()
        broker.wait(timeout=10)


def events_of(pipe: Pipeline, rule_id: str) -> list[dict[str, Any]]:
    """Every stored event of every alert of a rule."""
    out: list[dict[str, Any]] = []
    for a in pipe.alerts(state="all", limit=5000):
        if a["rule_id"] == rule_id:
            out += pipe.history(a["alert_id"])
    return out


def test_a_silent_feed_mutes_its_series_and_the_api_says_by_what(stack: tuple[Pipeline, Stack, Flow]) -> None:
    pipe, _, _ = stack
    down = pipe.wait_alert(rule_id="r_dossier_down", state="firing", timeout_s=120)
    assert (down["province"], down["inhibited_by"]) == ("", None)
    assert down["evidence"]["series_silent"] == 4

    def muted() -> list[dict[str, Any]]:
        rows = [a for a in pipe.alerts() if a["rule_id"] == "r_dossier_lost"]
        return rows if len(rows) == 4 and all(a["inhibited_by"] for a in rows) else []

    rows = wait_until(muted, "four inhibited per-series alerts")
    for a in rows:  # firing, with its state and history, and it says why it is quiet
        assert a["state"] == "firing" and a["inhibited_by"] == down["alert_id"]
        assert a["inhibited"]["note"] == f"inhibited by {down['alert_id']} (r_dossier_down on dvc_dossiers_received)"
        assert a["inhibited"]["rule_id"] == "r_dossier_down" and not a["silenced"]
    one = pipe.get(f"/alerts/{rows[0]['alert_id']}")
    assert one["inhibited"]["by"] == down["alert_id"] and one["history"][0]["inhibited_by"] == down["alert_id"]
    # three series report again: the feed is no longer down (1 of 4 silent); the one still silent is heard now
    ts = pipe.fresh_ts("dvc_dossiers_received")
    pipe.publish("dvc_dossiers_received", "22", ts, 3.0, level="partial")
    pipe.publish("dvc_dossiers_received", "22", ts, 3.0, level="full")
    pipe.publish("dvc_dossiers_received", "24", ts, 3.0, level="partial")
    pipe.flush()
    pipe.wait_alert(alert_id=down["alert_id"], state="resolved")
    still = next(a for a in rows if a["province"] == "24" and a["dims"] == {"level": "full"})
    events = pipe.wait_history(still["alert_id"], lambda es: len(es) >= 2)
    assert [(e["event"], e["inhibited_by"]) for e in events[:2]] == [("firing", down["alert_id"]), ("repeat", None)]
    back = [a for a in rows if a["alert_id"] != still["alert_id"]]
    for a in back:  # resolved by their readings, never having been heard of: their end is muted too
        done = pipe.wait_alert(alert_id=a["alert_id"], state="resolved")
        assert done["inhibited_by"] == down["alert_id"]


def test_a_restart_after_downtime_fires_no_staleness_for_series_reporting_within_cadence(
        stack: tuple[Pipeline, Stack, Flow]) -> None:
    pipe, s, flow = stack
    n = len(flow.provinces)
    wait_until(lambda: flow.sent >= 10 * n, "readings flowing", timeout_s=60)
    before = events_of(pipe, "r_lost")
    # Control Room goes down (worker and alerter); the agencies cannot deliver meanwhile
    flow.on.clear()
    time.sleep(2.5)
    s.stop("worker", "alerter")
    down_at = time.monotonic()
    time.sleep(DOWN_S)
    s.start("worker", "alerter")
    restarted, restarted_ms = time.monotonic(), now_ms()
    flow.on.set()  # the agencies deliver again, within their cadence
    print(f"down {restarted - down_at:.1f} s (staleness limit {LIMIT_S} s); {n} series of {FAST}")
    time.sleep(20)
    # a threshold crossed ~20 s after the restart: judged live, on its open window
    t_reading = now_ms()
    published = time.monotonic()
    pipe.publish("water_level", "31", t_reading, 650.0, station="s1")
    pipe.flush()
    a = pipe.wait_alert(rule_id="r_water", province="31", state="firing", timeout_s=60)
    seen = time.monotonic() - published
    window_start = t_reading - t_reading % 60_000
    print(f"threshold {published - restarted:.1f} s after the restart: reading -> firing in /alerts {seen:.2f} s; "
          f"event_at - reading ts {a['event_at'] - t_reading} ms; window end - event_at "
          f"{window_start + 60_000 - a['event_at']} ms")
    assert window_start <= a["starts_at"] == a["event_at"] < window_start + 60_000  # the open window's verdict
    assert a["event_at"] - t_reading <= 2_000
    # past the staleness limit after the restart, readings still flowing: nothing stale, nothing late
    time.sleep(max(0.0, LIMIT_S + 15 - (time.monotonic() - restarted)))
    lost = [e for e in events_of(pipe, "r_lost") if e["event_at"] >= restarted_ms]
    quality = events_of(pipe, "r_quality")
    print(f"connection_lost events: {len(before)} before the stop, {len(lost)} after the restart "
          f"({sum(e['event'] == 'firing' for e in lost)} firing, "
          f"{sum(e['event'] == 'resolved' for e in lost)} resolved); data_quality events: {len(quality)}")
    assert lost == [] and quality == []
