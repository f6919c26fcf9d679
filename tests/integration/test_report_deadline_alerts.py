"""Report deadline alerts on real parts: Tansu broker, the API with its embedded sink on chDB, the alerter and the
notifier as processes, a real HTTP receiver. A unit that has not submitted gets a reminder before a form's
deadline and an overdue alert after it, both delivered to its subscription by the one alert engine; its
submission through POST /reports resolves them.

Real time, any day: the rules' windows are wide (a reminder 33 days ahead, overdue judged 40 days), so a monthly
form always has a period due soon (deadlines are at most 31 days apart; 33 days ahead of day 5 of the next month,
the period has begun, so it can be submitted) and one overdue; which ones is computed with the same pure functions.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from controlroom.alerts.deadlines import judged_periods
from controlroom.broker import start_tansu, stop_process
from controlroom.indicators import period_of
from controlroom.reports import default_forms
from controlroom.schema import REPORTS_TOPIC, alert_id_of, fingerprint, now_ms
from controlroom.settings import Settings
from tests.conftest import free_port, register_secret
from tests.integration.api_client import api_client
from tests.integration.pipeline import services, wait_until
from tests.integration.receivers import Receiver, http_receiver

pytestmark = pytest.mark.integration

FORM = "BC_NHIEMVU_THANG"
FIGURES = {"documents_exchanged_m": 120, "e_cabinet_meetings_m": 3, "petitions_received_m": 30,
           "petitions_resolved_m": 25, "petitions_backlog_start": 4}
REMIND = {"stage": "reminder", "days_before": 33}
OVERDUE = {"stage": "overdue", "grace_s": 0, "judge_for_days": 40}
RULES = f"""
rules:
  - id: t_report_soon
    version: 1
    type: report_deadline
    feed: {FORM}
    severity: info
    repeat_interval_s: null
    provinces: ["01"]
    params: {orjson.dumps(REMIND).decode()}
  - id: t_report_overdue
    version: 1
    type: report_deadline
    feed: {FORM}
    severity: warning
    provinces: ["01"]
    params: {orjson.dumps(OVERDUE).decode()}
"""


def alert_id(rule: str, period: str) -> str:
    return alert_id_of(fingerprint(rule, FORM, "01", f"period={period}"))


def delivered(receiver: Receiver, path: str) -> list[tuple[str, str]]:
    """(alert id, event) of every event delivered at `path`."""
    return [(d["alert_id"], d["event"]) for h in receiver.at(path) for d in orjson.loads(h.body)["delivers"]]



def test_reminder_and_overdue_reach_the_units_webhook_and_its_submissions_resolve_them(tmp_path) -> None:  # type: ignore[no-untyped-def]
    form = default_forms()[FORM]
    started = now_ms()
    soon = [p.label for p, _ in judged_periods(form, REMIND, started)]
    late = [p.label for p, _ in judged_periods(form, OVERDUE, started)]
    assert soon and late  # a monthly form, windows of 40 days: always both
    port = free_port()
    broker = start_tansu(port, tmp_path / "tansu.log")
    (tmp_path / "rules.yaml").write_text(RULES)
    signing_key = secrets.token_hex(32)
    register_secret(signing_key)
    settings = Settings(data_dir=tmp_path / "data", clickhouse_url=f"chdb://{tmp_path / 'warehouse'}",  # type: ignore[arg-type]
                        kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=False, log_format="console",
                        alerter_tick_s=0.5, alert_rules_file=tmp_path / "rules.yaml",
                        notify_signing_key=signing_key, notify_backoff_s=0.2)  # type: ignore[arg-type]
    try:
        with api_client(settings) as (client, keys), http_receiver() as receiver, \
                services(settings, tmp_path, "notifier"):
            r = client.post("/subscriptions", headers=keys.header("admin"), json={
                "name": "Hà Nội IOC", "channel": "webhook", "target": receiver.url("/ioc-01"),
                "filters": {"provinces": ["01"], "min_severity": "info"},
                "group_by": ["..."], "group_wait_s": 0, "group_interval_s": 1})
            assert r.status_code == 201, r.text
            register_secret(str(r.json()["secret"]))
            time.sleep(1.5)  # the notifier applies the subscription from the control topic
            with services(settings, tmp_path, "alerter"):
                expected = {(alert_id("t_report_soon", p), "firing") for p in soon} | {
                    (alert_id("t_report_overdue", p), "firing") for p in late}
                wait_until(lambda: expected <= set(delivered(receiver, "/ioc-01")), "reminder and overdue webhooks",
                           90)
                fired = time.monotonic()
                alerts = {a["alert_id"]: a for a in client.get("/alerts", params={"state": "firing", "feed": FORM},
                                                                headers=keys.header("viewer")).json()}
                assert set(alerts) == {i for i, _ in expected}  # /alerts filters by form as by feed
                overdue = alerts[alert_id("t_report_overdue", late[0])]
                assert (overdue["rule_type"], overdue["feed"], overdue["province"], overdue["severity"]) == (
                    "report_deadline", FORM, "01", "warning")
                assert overdue["dims"] == {"period": late[0]} and overdue["evidence"]["agency"] == "ioc_01"
                assert alerts[alert_id("t_report_soon", soon[0])]["severity"] == "info"

                made, _ = client.app.state.api.security.keys.create(  # type: ignore[attr-defined]
                    name="ioc-01", role="agency", created_by="test", agency="ioc_01", provinces=["01"])
                register_secret(made.token)
                hanoi = {"Authorization": f"Bearer {made.token}"}
                for period in late + soon:  # the overdue ones late, the ones due soon on time
                    r = client.post(f"/reports/{FORM}/{period}", json={"values": FIGURES}, headers=hanoi)
                    assert r.status_code == 201, r.text
                    assert r.json()["on_time"] is (period in soon)
                resolved = {(alert_id("t_report_soon", p), "resolved") for p in soon} | {
                    (alert_id("t_report_overdue", p), "resolved") for p in late}
                wait_until(lambda: resolved <= set(delivered(receiver, "/ioc-01")), "resolved webhooks", 60)
                print(f"submission → resolved webhook: {time.monotonic() - fired:.2f} s after the firing ones")
                compliance = client.get("/reports/compliance", params={"form": FORM, "period": late[0]},
                                        headers=keys.header("viewer")).json()["forms"][0]
                hanoi_row = next(u for u in compliance["units"] if u["unit"] == "01")
                assert (hanoi_row["submitted"], hanoi_row["on_time"]) == (True, False)
                # each alert was notified once firing and once resolved: no duplicate, no other province's
                events = delivered(receiver, "/ioc-01")
                assert sorted(events) == sorted(expected | resolved)
    finally:
        stop_process(broker, 10.0)


async def read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    out: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return out


def test_submissions_stored_are_announced_again_at_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A broker that lost its topics (Tansu keeps nothing across a restart), or an announcement lost in a crash: the
    API announces again, at start, every report the warehouse holds as submitted (drafts are not)."""
    period = period_of("month", now_ms()).label  # begun; its deadline is next month
    submitted: dict[str, int] = {}
    for run in (1, 2):
        port = free_port()
        broker = start_tansu(port, tmp_path / f"tansu-{run}.log")  # a new, empty broker each time
        settings = Settings(data_dir=tmp_path / "data", clickhouse_url=f"chdb://{tmp_path / 'warehouse'}",  # type: ignore[arg-type]
                            kafka_bootstrap=f"127.0.0.1:{port}", kafka_idempotence=False, log_format="console",
                            embedded_sink=False)
        try:
            with api_client(settings) as (client, _keys):
                if run == 1:
                    for unit in ("01", "79"):
                        made, _ = client.app.state.api.security.keys.create(  # type: ignore[attr-defined]
                            name=f"ioc-{unit}", role="agency", created_by="test", agency=f"ioc_{unit}",
                            provinces=[unit])
                        register_secret(made.token)
                        auth = {"Authorization": f"Bearer {made.token}"}
                        body: dict[str, Any] = {"values": FIGURES, "draft": unit == "79"}
                        r = client.post(f"/reports/{FORM}/{period}", json=body, headers=auth)
                        assert r.status_code == 201, r.text
                        if unit == "01":
                            submitted[unit] = _iso_ms(r.json()["submitted_at"])
                            again = client.post(f"/reports/{FORM}/{period}", json=body, headers=auth)  # revision 2
                            assert again.json()["revision"] == 2
                records = asyncio.run(read_topic(settings.kafka_bootstrap, REPORTS_TOPIC, 2 if run == 1 else 1))
        finally:
            stop_process(broker, 10.0)
        if run == 1:  # announced as submitted: each revision (the draft is not)
            assert [(d["unit"], d["revision"]) for d in records] == [("01", 1), ("01", 2)]
        else:  # re-announced from the warehouse: the report once, its latest revision, its first submission time
            assert [(d["form"], d["period"], d["unit"], d["revision"], d["submitted_at"], d["agency"])
                    for d in records] == [(FORM, period, "01", 2, submitted["01"], "ioc_01")]


def _iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
