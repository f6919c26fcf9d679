"""The notifier on real parts: Tansu broker, a real HTTP receiver, a real SMTP server (aiosmtpd).

Signed webhooks (json and Alertmanager v4), retries then success, dead letters, filters and tiers, e-mail
in Vietnamese and English, and the restart guarantee with the notifier as a subprocess killed mid-stream.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from controlroom.alerts.signing import subscription_secret, verify_signature
from controlroom.catalog import default_catalog
from controlroom.errors import StartupError
from controlroom.kafka import ensure_topics, make_producer
from controlroom.schema import (
    ALERTS_TOPIC,
    CONTROL_TOPIC,
    DELIVERIES_TOPIC,
    INCIDENTS_TOPIC,
    IncidentMember,
    alert_message,
    control_message,
    incident_message,
)
from controlroom.settings import Settings
from notify.service import Notifier
from tests.conftest import leaked_secrets, register_secret
from tests.integration.pipeline import ROOT, settings_env
from tests.integration.receivers import http_receiver, smtp_server

pytestmark = pytest.mark.integration

T0 = 1_795_687_200_000  # 2026-11-26T10:00:00Z


# --- Kafka helpers --------------------------------------------------------------------------------------

def alert(n: int, kind: str = "firing", *, severity: str = "warning", province: str = "01",
          feed: str = "water_level", seq: int = 1, silenced: bool = False) -> dict[str, Any]:
    e = alert_message(fingerprint_=f"rule{n}|{feed}|{province}|station=s1", rule_id=f"rule{n}", rule_version=1,
                      rule_type="threshold", severity=severity, event=kind, state=kind, seq=seq, feed=feed,
                      province=province, dims={"station": "s1"} if feed == "water_level" else {},
                      summary_vi=f"Mực nước vượt báo động {n}", summary_en=f"Water level above alarm {n}",
                      value=812.5, evidence={"threshold": 800.0}, starts_at_ms=T0, ends_at_ms=None,
                      event_at_ms=T0 + n, link=f"https://cr.example.vn/alerts/{n}")
    e["silenced"] = silenced
    return e


def sub_put(sid: str, **doc: Any) -> dict[str, Any]:
    """A subscription; unless the test says otherwise, each group notifies at once (group_wait_s 0)."""
    body = {"id": sid, "name": sid, "group_wait_s": 0, **doc}
    return control_message("subscription.put", by="test", at_ms=T0, subscription=body)


async def publish(settings: Settings, topic: str, docs: list[dict[str, Any]]) -> None:
    await ensure_topics(settings, [topic])  # as every service does: alerts.control gets its one partition
    producer = make_producer(settings)
    await producer.start()
    try:
        for d in docs:
            await producer.send(topic, orjson.dumps(d), key=str(d.get("alert_id", "")).encode() or None)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        parts = sorted(consumer.assignment())
        ends = await consumer.end_offsets(parts)
        out: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(orjson.loads(r.value) for r in records)
        return out
    finally:
        await consumer.stop()


async def until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")


def signing_key() -> str:
    key = "test-signing-" + secrets.token_hex(16)
    register_secret(key)
    return key


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Notifier]:
    notifier = Notifier(settings, default_catalog())
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        await until(lambda: notifier.started.is_set() or task.done(), 30, "the notifier to start")
        if task.done():
            task.result()
        yield notifier
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


# --- in-process: formats, filters, tiers, retries, dead letters, e-mail ------------------------------------

async def test_webhooks_and_email(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    key = signing_key()
    with http_receiver() as rx, smtp_server() as (box, smtp_port):
        settings = make_settings(kafka_bootstrap=broker, notify_signing_key=key, notify_max_attempts=3,
                                 notify_backoff_s=0.05, notify_backoff_max_s=0.2, notify_timeout_s=3,
                                 smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_from="cr@example.gov.vn",
                                 notify_external_url="https://cr.example.vn")
        rx.fail_first["/flaky"] = (2, 500)
        rx.always["/down"] = 503
        rx.always["/gone"] = 410
        subs = [
            sub_put("json-hn", channel="webhook", target=rx.url("/json-hn"),
                    filters={"provinces": ["01"], "min_severity": "warning"}),
            sub_put("am", channel="webhook", target=rx.url("/am"), format="alertmanager",
                    filters={"feeds": ["water_level"]}),
            sub_put("flaky", channel="webhook", target=rx.url("/flaky"), filters={"min_severity": "critical"}),
            sub_put("down", channel="webhook", target=rx.url("/down"), filters={"min_severity": "critical"}),
            sub_put("gone", channel="webhook", target=rx.url("/gone"), filters={"min_severity": "critical"}),
            sub_put("boss", channel="webhook", target=rx.url("/boss"), tier="escalation"),
            sub_put("mail-vi", channel="email", target="truc.ban@example.gov.vn", filters={"provinces": ["79"]}),
            sub_put("mail-en", channel="email", target="duty@example.gov.vn", language="en",
                    filters={"provinces": ["79"]}),
            sub_put("removed", channel="webhook", target=rx.url("/removed")),
            control_message("subscription.delete", by="test", at_ms=T0, subscription_id="removed"),
            control_message("ack", by="test", at_ms=T0, alert_id="x", comment="not for the notifier"),
        ]
        for sid in ("json-hn", "am", "flaky", "down", "gone", "boss", "mail-vi", "mail-en"):
            register_secret(subscription_secret(key, sid))
        await publish(settings, CONTROL_TOPIC, subs)
        async with running(settings) as notifier:
            assert sorted(notifier.subscriptions) == ["am", "boss", "down", "flaky", "gone", "json-hn", "mail-en",
                                                      "mail-vi"]
            events = [
                alert(1),  # warning, 01, water_level: json-hn, am
                alert(2, "pending"),  # nobody
                alert(3, silenced=True),  # nobody
                alert(4, severity="info"),  # am only (json-hn wants >= warning)
                alert(5, severity="critical", province="79"),  # am, flaky, down, gone, mail-vi, mail-en
                alert(6, "escalated", severity="critical", seq=3),  # boss only
                alert(7, "resolved", feed="gold_price", province="00", seq=2),  # json-hn? no (00); nobody else
            ]
            sent_at = time.monotonic()
            await publish(settings, ALERTS_TOPIC, events[:1])
            first = await until(lambda: rx.at("/json-hn"), 10, "the first webhook")
            latency_s = first[0].at - sent_at
            await publish(settings, ALERTS_TOPIC, events[1:])
            await until(lambda: len(box.messages) == 2 and len(rx.at("/down")) == 3 and rx.at("/boss")
                        and len(rx.at("/flaky")) == 3, 20, "every delivery")
            await asyncio.sleep(0.3)  # anything unexpected would arrive now
        records = await read_all(settings, DELIVERIES_TOPIC)

    assert latency_s < 2.0, f"publish → webhook took {latency_s:.2f} s"
    ids = {int(e["rule_id"][4:]): e["alert_id"] for e in events}
    got = {path: sorted(h.key for h in rx.at(path)) for path in
           ("/json-hn", "/am", "/flaky", "/down", "/gone", "/boss", "/removed")}
    assert got == {
        "/json-hn": [f"{ids[1]}:1:json-hn"],
        "/am": sorted([f"{ids[1]}:1:am", f"{ids[4]}:1:am", f"{ids[5]}:1:am"]),
        "/flaky": [f"{ids[5]}:1:flaky"] * 3,
        "/down": [f"{ids[5]}:1:down"] * 3,
        "/gone": [f"{ids[5]}:1:gone"],
        "/boss": [f"{ids[6]}:3:boss"],
        "/removed": [],
    }
    # every request is signed with its subscription's derived secret, over the exact body
    for hit in rx.hits:
        sid = hit.key.rsplit(":", 1)[1]
        assert verify_signature(subscription_secret(key, sid), hit.body, hit.headers["X-Signature"])
        assert not verify_signature(subscription_secret(key, "other"), hit.body, hit.headers["X-Signature"])
    json_hit = rx.at("/json-hn")[0]
    assert json_hit.headers["X-ControlRoom-Event"] == "firing"
    body = orjson.loads(json_hit.body)
    assert (body["idempotency_key"], body["subscription_id"], body["status"]) == (f"{ids[1]}:1:json-hn", "json-hn",
                                                                                  "firing")
    assert body["group"]["labels"] == {"rule": "rule1", "feed": "water_level"} and body["alerts"] == [events[0]]
    assert [d["idempotency_key"] for d in body["delivers"]] == [f"{ids[1]}:1:json-hn"]
    am = {orjson.loads(h.body)["alerts"][0]["labels"]["alertname"]: orjson.loads(h.body) for h in rx.at("/am")}
    p = am["rule5"]
    assert (p["version"], p["status"], p["receiver"], p["truncatedAlerts"]) == ("4", "firing", "am", 0)
    assert p["externalURL"] == "https://cr.example.vn"
    assert p["groupLabels"] == {"alertname": "rule5", "feed": "water_level"}
    a = p["alerts"][0]
    wl = default_catalog().feeds["water_level"]
    assert a["labels"] == {"station": "s1", "alertname": "rule5", "severity": "critical", "feed": "water_level",
                           "province": "79", "rule_type": "threshold", "category": wl.category, "agency": "hydromet",
                           "alert_id": ids[5]}
    assert (a["startsAt"], a["endsAt"]) == ("2026-11-26T10:00:00Z", "0001-01-01T00:00:00Z")
    assert a["annotations"]["summary"] == "Water level above alarm 5" and a["generatorURL"].endswith("/alerts/5")
    # e-mail: one per language, right subject, idempotency header
    mails = {tuple(rcpt): msg for rcpt, msg in box.messages}
    vi, en = mails[("truc.ban@example.gov.vn",)], mails[("duty@example.gov.vn",)]
    assert vi["Subject"] == "[Khẩn cấp] ĐANG BÁO ĐỘNG: Mực nước vượt báo động 5 – Thành phố Hồ Chí Minh"
    assert en["Subject"] == "[Critical] FIRING: Water level above alarm 5 – Ho Chi Minh City"
    assert vi["X-Idempotency-Key"] == f"{ids[5]}:1:mail-vi" and en["X-Idempotency-Key"] == f"{ids[5]}:1:mail-en"
    assert "Bắt đầu: 2026-11-26 17:00:00 (giờ Việt Nam, UTC+7)" in vi.get_content()  # type: ignore[attr-defined]
    assert "Started: 2026-11-26 17:00:00 (Vietnam time, UTC+7)" in en.get_content()  # type: ignore[attr-defined]
    # every attempt is on alerts.deliveries
    by_sub: dict[str, list[tuple[int, str, int]]] = {}
    for r in records:
        by_sub.setdefault(r["subscription_id"], []).append((r["attempt"], r["status"], r["http_status"]))
    assert sorted(by_sub["flaky"]) == [(1, "retry", 500), (2, "retry", 500), (3, "delivered", 200)]
    assert sorted(by_sub["down"]) == [(1, "retry", 503), (2, "retry", 503), (3, "dead_letter", 503)]
    assert by_sub["gone"] == [(1, "dead_letter", 410)]
    assert by_sub["mail-vi"] == by_sub["mail-en"] == [(1, "delivered", 0)]
    assert len(records) == 1 + 3 + 3 + 3 + 1 + 1 + 2
    mail = next(r for r in records if r["subscription_id"] == "mail-en")
    assert mail["target"] == "duty@example.gov.vn" and mail["channel"] == "email"
    assert mail["idempotency_key"] == f"{ids[5]}:1:mail-en" and mail["error"] == ""


# --- the restart guarantee: a subprocess, SIGKILL or SIGTERM mid-stream --------------------------------------

CONCURRENCY = 4
EVENTS = 200
RESTART_SUBS = ("r-a", "r-b", "r-c")
PROVINCES = sorted(default_catalog().provinces)[:20]


def start_notifier(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "controlroom"
    return subprocess.Popen([str(exe), "notifier"], env=settings_env(settings), cwd=ROOT,
                            stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def members(hit: Any) -> list[str]:
    """The per-event keys a grouped notification delivers (its body's `delivers`)."""
    return [d["idempotency_key"] for d in orjson.loads(hit.body)["delivers"]]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_restart_mid_stream(sig: signal.Signals, any_broker: str, make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """200 alerts of 10 rules, in 4 bursts, to 3 subscriptions grouping by rule: grouped notifications, and
    the process killed (or stopped) while groups wait and notifications are in flight."""
    key = signing_key()
    log_path = tmp_path / "notifier.log"
    with http_receiver() as rx:
        rx.delay_s = 0.02
        settings = make_settings(kafka_bootstrap=any_broker, notify_signing_key=key, notify_concurrency=CONCURRENCY,
                                 notify_batch_max=50, log_format="json")
        await publish(settings, CONTROL_TOPIC,
                      [sub_put(s, channel="webhook", target=rx.url(f"/{s}"), group_wait_s=0.2, group_interval_s=1)
                       for s in RESTART_SUBS])
        events = [alert(n % 10, seq=n % 3 + 1, province=PROVINCES[n // 10]) for n in range(EVENTS)]
        expected = {f"{e['alert_id']}:{e['seq']}:{s}" for e in events for s in RESTART_SUBS}
        assert len(expected) == EVENTS * len(RESTART_SUBS)

        def received() -> list[str]:
            return [k for h in rx.hits for k in members(h)]

        proc = start_notifier(settings, log_path)
        try:
            for burst in range(4):
                await publish(settings, ALERTS_TOPIC, events[burst * 50:(burst + 1) * 50])
                await asyncio.sleep(0.4)
            await until(lambda: len(received()) >= 150 or proc.poll() is not None, 30, "deliveries")
            assert proc.poll() is None, log_path.read_text()[-3000:]
            os.kill(proc.pid, sig)
            assert await asyncio.to_thread(proc.wait, 20) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
            before_hits = list(rx.hits)
            before = len(received())
            assert before < len(expected), "the notifier finished before the signal: nothing was tested"
            proc = start_notifier(settings, log_path)
            await until(lambda: set(received()) >= expected, 40, "every key after the restart")
            await asyncio.sleep(1.5)  # a late duplicate would show up now (a group interval and more)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                await asyncio.to_thread(proc.wait, 20)
        records = await read_all(settings, DELIVERIES_TOPIC)

    counts = Counter(received())
    duplicated = {k: n for k, n in counts.items() if n > 1}
    assert set(counts) == expected
    grouped = [len(members(h)) for h in rx.hits]
    assert max(grouped) > 1 and len(rx.hits) < len(expected), "no notification carried a group"
    if sig == signal.SIGTERM:
        assert duplicated == {}
    else:  # only what was in flight at the kill: at most one notification per concurrency slot, each twice
        in_flight = {h.key for h in before_hits if set(members(h)) & duplicated.keys()}
        assert len(in_flight) <= CONCURRENCY and all(n == 2 for n in duplicated.values()), duplicated
    delivered = Counter(r["idempotency_key"] for r in records if r["status"] == "delivered")
    assert set(delivered) == expected
    text = log_path.read_text()
    assert "notifier stopped" in text and not leaked_secrets(text)
    print(f"{sig.name}: {before} of {len(expected)} received before the signal in {len(before_hits)} "
          f"notifications; {len(rx.hits)} notifications in all; duplicates {len(duplicated)}")


async def test_a_silent_feed_reaches_each_subscriber_once(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    """Every water_level series goes silent (68 connection_lost alerts): each subscriber gets one notification
    listing them all (JSON, Alertmanager and e-mail), not 68; then one when they are all resolved."""
    key = signing_key()
    catalog = default_catalog()
    with http_receiver() as rx, smtp_server() as (box, smtp_port):
        settings = make_settings(kafka_bootstrap=broker, notify_signing_key=key, smtp_host="127.0.0.1",
                                 smtp_port=smtp_port, smtp_from="cr@example.gov.vn")
        await publish(settings, CONTROL_TOPIC, [
            sub_put("ops", channel="webhook", target=rx.url("/ops"), group_wait_s=2, group_interval_s=3),
            sub_put("am", channel="webhook", target=rx.url("/am"), format="alertmanager", group_wait_s=2,
                    group_interval_s=3),
            sub_put("desk", channel="email", target="truc.ban@example.gov.vn", group_wait_s=2, group_interval_s=3)])
        silent = [alert_message(
            fingerprint_=f"connection_lost|water_level|{p}|station={st}", rule_id="connection_lost", rule_version=1,
            rule_type="staleness", severity="warning", event="firing", state="firing", seq=1, feed="water_level",
            province=p, dims={"station": st}, summary_vi=f"Mất kết nối {p} {st}", summary_en=f"Silent {p} {st}",
            value=900.0, evidence={}, starts_at_ms=T0, ends_at_ms=None, event_at_ms=T0 + i)
            for i, (p, st) in enumerate((p, st) for p in sorted(catalog.provinces) for st in ("s1", "s2"))]
        for e in silent:
            e["silenced"] = False
        async with running(settings):
            await publish(settings, ALERTS_TOPIC, silent)  # the events of one tick, as the alerter sends them
            await until(lambda: rx.at("/ops") and rx.at("/am") and box.messages, 15, "the grouped notifications")
            await asyncio.sleep(2.5)  # a second notification would come now
            firing = (list(rx.at("/ops")), list(rx.at("/am")), list(box.messages))
            resolved = [{**e, "event": "resolved", "state": "resolved", "seq": 2, "ends_at": T0 + 600_000}
                        for e in silent]
            await publish(settings, ALERTS_TOPIC, resolved)
            await until(lambda: len(rx.at("/ops")) == 2 and len(box.messages) == 2, 15, "the resolved group")

    ops, am, mails = firing
    assert (len(ops), len(am), len(mails)) == (1, 1, 1), "one notification per subscriber"
    body = orjson.loads(ops[0].body)
    assert len(body["alerts"]) == len(body["delivers"]) == 68 and body["status"] == "firing"
    assert body["group"]["labels"] == {"rule": "connection_lost", "feed": "water_level"}
    p = orjson.loads(am[0].body)
    assert len(p["alerts"]) == 68 and p["groupLabels"] == {"alertname": "connection_lost", "feed": "water_level"}
    assert p["commonLabels"]["alertname"] == "connection_lost" and "province" not in p["commonLabels"]
    _, mail = mails[0]
    assert mail["Subject"].startswith("[Cảnh báo] ĐANG BÁO ĐỘNG: 68 cảnh báo")
    assert "Thành phố Hà Nội (01): 2" in mail.get_content().splitlines()  # type: ignore[attr-defined]
    done = orjson.loads(rx.at("/ops")[1].body)
    assert done["status"] == "resolved" and len(done["delivers"]) == 68


async def test_a_control_topic_with_several_partitions_is_refused(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    """Commands must keep their order (a delete after its put): alerts.control auto-created with several
    partitions by a stray producer is a clear start-up error, not a silent reordering."""
    settings = make_settings(kafka_bootstrap=broker, topic_partitions=3)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(CONTROL_TOPIC, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    with pytest.raises(StartupError, match="alerts.control has 3 partitions; it must have 1"):
        await ensure_topics(settings, [ALERTS_TOPIC, CONTROL_TOPIC])


# --- incidents: subscribing with `kinds`, the same grouping path, offsets of the incidents topic ---------------

IID = "0123456789abcdef"


def incident_event(event: str, seq: int, state: str = "open") -> dict[str, Any]:
    members: list[IncidentMember] = [
        {"alert_id": "a" * 16, "rule_id": "water_level_alarm", "feed": "water_level", "province": "46",
         "dims": {"station": "s1"}, "signal": "water_level", "severity": "critical", "state": "firing",
         "fired_at": T0, "joined_at": T0},
        {"alert_id": "b" * 16, "rule_id": "sar_flood_incidents", "feed": "sar_incidents", "province": "46",
         "dims": {"type": "flood"}, "signal": "rescue_flood", "severity": "warning", "state": "firing",
         "fired_at": T0, "joined_at": T0}]
    return dict(incident_message(
        incident_id=IID, seq=seq, type_id="flood", type_version=1, scope="province", province="46",
        severity="critical", event=event, state=state, title_vi="Lũ lụt – Thành phố Huế", title_en="Flooding – Hue",
        members=members, opened_at_ms=T0, resolved_at_ms=T0 + 3_600_000 if state == "resolved" else None,
        event_at_ms=T0 + seq * 1000, ack={"by": "trực ban", "comment": ""} if state != "open" else None,
        alert_id="b" * 16 if event == "alert_joined" else "", by="trực ban" if event in ("assigned", "commented")
        else ""))


async def test_incident_subscriptions(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    key = signing_key()
    with http_receiver() as rx:
        settings = make_settings(kafka_bootstrap=broker, notify_signing_key=key, notify_timeout_s=3)
        fast = {"group_wait_s": 0, "group_interval_s": 1}
        subs = [
            sub_put("inc", channel="webhook", target=rx.url("/inc"), kinds=["incident"], **fast),
            sub_put("both", channel="webhook", target=rx.url("/both"), kinds=["alert", "incident"], **fast),
            sub_put("alerts", channel="webhook", target=rx.url("/alerts"), **fast),  # default: alerts only
            sub_put("inc-am", channel="webhook", target=rx.url("/inc-am"), format="alertmanager",
                    kinds=["incident"], filters={"provinces": ["46"], "feeds": ["sar_incidents"]}, **fast),
            sub_put("inc-79", channel="webhook", target=rx.url("/inc-79"), kinds=["incident"],
                    filters={"provinces": ["79"]}, **fast),
        ]
        for sid in ("inc", "both", "alerts", "inc-am", "inc-79"):
            register_secret(subscription_secret(key, sid))
        await publish(settings, CONTROL_TOPIC, subs)
        lifecycle = [incident_event("opened", 1), incident_event("alert_joined", 2),
                     incident_event("acknowledged", 3, "acknowledged"), incident_event("assigned", 4, "acknowledged"),
                     incident_event("commented", 5, "acknowledged"), incident_event("resolved", 6, "resolved")]
        async with running(settings):
            await publish(settings, INCIDENTS_TOPIC, lifecycle[:1])
            await publish(settings, ALERTS_TOPIC, [alert(1, severity="critical", province="46")])
            await until(lambda: rx.at("/inc") and rx.at("/both") and rx.at("/alerts") and rx.at("/inc-am"), 10,
                        "the incident's and the alert's first notifications")
            await publish(settings, INCIDENTS_TOPIC, lifecycle[1:])

            def delivered(path: str) -> list[str]:
                return sorted(d["idempotency_key"] for h in rx.at(path)
                              for d in orjson.loads(h.body).get("delivers", []))

            await until(lambda: len(delivered("/inc")) == 3 and len(rx.at("/inc-am")) >= 2
                        and f"incident-{IID}:6:both" in delivered("/both"), 15, "the acknowledgement and the end")
            await asyncio.sleep(1.5)  # anything unexpected (joins, assignments, comments) would arrive now
        records = await read_all(settings, DELIVERIES_TOPIC)
        before = len(rx.hits)
        async with running(settings):  # offsets were committed: a restart sends nothing again
            await asyncio.sleep(1.5)
        assert len(rx.hits) == before, [h.key for h in rx.hits[before:]]

    alert_id = alert(1, severity="critical", province="46")["alert_id"]
    # opened, acknowledged and resolved notify; joins, assignments and comments do not
    assert delivered("/inc") == [f"incident-{IID}:{s}:inc" for s in (1, 3, 6)]
    assert delivered("/both") == sorted([f"{alert_id}:1:both", *(f"incident-{IID}:{s}:both" for s in (1, 3, 6))])
    assert delivered("/alerts") == [f"{alert_id}:1:alerts"]
    assert rx.at("/inc-79") == []
    first = orjson.loads(rx.at("/inc")[0].body)
    assert (first["kind"], first["status"], first["incident"]["event"], first["group"]["labels"]) == (
        "incident", "firing", "opened", {"incident_id": IID})
    assert rx.at("/inc")[0].headers["X-ControlRoom-Event"] == "incident.opened"
    assert [orjson.loads(h.body)["incident"]["event"] for h in rx.at("/inc")][-1] == "resolved"
    for hit in rx.hits:
        sid = hit.key.rsplit(":", 1)[1]
        assert verify_signature(subscription_secret(key, sid), hit.body, hit.headers["X-Signature"])
    am = [orjson.loads(h.body) for h in rx.at("/inc-am")]
    assert [(p["status"], p["alerts"][0]["labels"]["alertname"], p["alerts"][0]["labels"]["incident_id"])
            for p in am][::len(am) - 1] == [("firing", "incident", IID), ("resolved", "incident", IID)]
    # every attempt recorded, the incident's id and event in alert_deliveries' columns
    inc_records = sorted((r["subscription_id"], r["seq"], r["event"]) for r in records if r["alert_id"] == IID)
    assert [r for r in inc_records if r[0] == "inc"] == [("inc", 1, "incident.opened"),
                                                         ("inc", 3, "incident.acknowledged"),
                                                         ("inc", 6, "incident.resolved")]
    assert all(r["status"] == "delivered" for r in records)
