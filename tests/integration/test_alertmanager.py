"""Our grouping measured against the reference implementation: a real Alertmanager (Debian's
prometheus-alertmanager 0.25, `make alertmanager` installs it), started by the test with a generated config.

The same alert events go (a) to Alertmanager through our pusher (ALERTMANAGER_URL: POST /api/v2/alerts) and on
to its webhook receiver, and (b) through our own notifier to a subscription in format `alertmanager` with the
equivalent grouping (group_by [rule, feed] = Alertmanager's [alertname, feed], the same group_wait and
group_interval); both webhooks land on one real HTTP receiver. The payloads must be the same notifications: per
group, the same sequence of (status, alerts with their labels, annotations, times, fingerprints, groupLabels,
groupKey). Where the timing semantics differ on purpose (README, "Alertmanager"), the test measures the
difference instead: an alert whose startsAt is older than group_wait, and a change to a group idle for longer
than group_interval.

TODO(inhibition): inhibition rules (controlroom/data/inhibit.yaml) have not landed in main yet; when they do,
give Alertmanager the equivalent `inhibit_rules` (e.g. source_matchers [alertname="connection_lost"],
target_matchers [rule_type=~"threshold|staleness"], equal [feed]) and feed both sides an inhibiting and an
inhibited alert: the inhibited one must be left out of the same notifications.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from controlroom.broker import free_port
from controlroom.kafka import ensure_topics, make_producer
from controlroom.schema import ALERTS_TOPIC, CONTROL_TOPIC, AlertEvent, alert_message
from tests.conftest import terminate
from tests.integration.receivers import Hit, http_receiver
from tests.integration.test_notifier import publish, running, signing_key, sub_put, until

pytestmark = pytest.mark.integration

AM_BIN = Path("/usr/bin/prometheus-alertmanager")
# wide enough that a loaded machine's delays (up to a second or so) cannot move a change across a group tick
GROUP_WAIT_S = 3.0
GROUP_INTERVAL_S = 6.0


@contextmanager
def alertmanager(tmp: Path, webhook_url: str, *, port: int | None = None) -> Iterator[str]:
    """A real Alertmanager on a free port: one route grouping like our subscription, a webhook receiver."""
    assert AM_BIN.exists(), f"{AM_BIN} is missing: run `make alertmanager` (apt-get install prometheus-alertmanager)"
    port = port or free_port()
    config = {
        "route": {"receiver": "ops", "group_by": ["alertname", "feed"], "group_wait": f"{GROUP_WAIT_S:g}s",
                  "group_interval": f"{GROUP_INTERVAL_S:g}s", "repeat_interval": "1h"},
        "receivers": [{"name": "ops", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    log = tmp / "alertmanager.log"
    proc = subprocess.Popen([str(AM_BIN), f"--config.file={path}", f"--storage.path={tmp / 'am-data'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "alertmanager not ready: " + log.read_text()[-2000:]
            time.sleep(0.05)
        yield url
    finally:
        terminate(proc, 10)


def am_alert(rule: str, feed: str, province: str, kind: str = "firing", *, seq: int = 1, starts_at: int,
             at: int | None = None) -> AlertEvent:
    at = at if at is not None else starts_at
    e = alert_message(fingerprint_=f"{rule}|{feed}|{province}|station=s1", rule_id=rule, rule_version=1,
                      rule_type="threshold", severity="warning", event=kind, state=kind, seq=seq, feed=feed,
                      province=province, dims={"station": "s1"}, summary_vi=f"{rule} {province}",
                      summary_en=f"{rule} in {province}", value=1.5, evidence={}, starts_at_ms=starts_at,
                      ends_at_ms=at if kind == "resolved" else None, event_at_ms=at,
                      link=f"https://cr.example.vn/alerts/{rule}/{province}")
    e["silenced"] = False
    return e


def resolved(e: AlertEvent, at: int) -> AlertEvent:
    return {**e, "event": "resolved", "state": "resolved", "seq": e["seq"] + 1, "ends_at": at, "event_at": at}


def comparable(hit: Hit) -> dict[str, Any]:
    """A webhook payload minus externalURL (each side's own address), alerts in fingerprint order."""
    p = orjson.loads(hit.body)
    p.pop("externalURL")
    p["alerts"] = sorted(p["alerts"], key=lambda a: a["fingerprint"])
    return p


def by_group(hits: list[Hit]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for h in hits:
        p = comparable(h)
        out.setdefault(p["groupKey"], []).append(p)
    return out


def summary(p: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    return p["status"], sorted((a["labels"]["province"], a["status"]) for a in p["alerts"])


async def test_same_notifications_as_alertmanager(broker: str, make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = signing_key()
    with http_receiver() as rx, alertmanager(tmp_path, rx.url("/am")) as am_url:
        settings = make_settings(kafka_bootstrap=broker, notify_signing_key=key, alertmanager_url=am_url)
        await publish(settings, CONTROL_TOPIC, [sub_put(
            "ops", channel="webhook", target=rx.url("/ours"), format="alertmanager", group_by=["rule", "feed"],
            group_wait_s=GROUP_WAIT_S, group_interval_s=GROUP_INTERVAL_S, repeat_interval_s=None)])
        await ensure_topics(settings, [ALERTS_TOPIC])
        producer = make_producer(settings)
        await producer.start()
        async with running(settings) as notifier:
            pusher = notifier.alertmanager
            assert pusher is not None
            await until(pusher.caught_up.is_set, 20, "the pusher to read topic alerts")

            async def send(*events: AlertEvent) -> float:
                for e in events:
                    await producer.send(ALERTS_TOPIC, orjson.dumps(e), key=e["alert_id"].encode())
                await producer.flush()
                return time.monotonic()

            now = int(time.time() * 1000)
            a = [am_alert("river_flood", "water_level", p, starts_at=now) for p in ("01", "79", "48", "46")]
            b = [am_alert("pm25_high", "air_quality_pm25", p, starts_at=now) for p in ("01", "79", "31")]
            c = am_alert("connection_lost", "gold_price", "00", starts_at=now - 600_000)  # began 10 min ago
            t0 = await send(*a[:3], *b[:2], c)
            ms = lambda: int(time.time() * 1000)  # noqa: E731

            async def at(s: float) -> None:
                await asyncio.sleep(max(0.0, t0 + s - time.monotonic()))

            # groups of A and B tick at ~3, 9, 15, 21 s; each change lands mid-interval
            await at(5.25)
            await send(a[3], resolved(a[0], ms()))  # A: one more fires, one resolves → one notification at ~9 s
            await at(11.25)
            t_b3 = await send(*(resolved(x, ms()) for x in a[1:]), b[2])  # A all resolved; B idle since ~2 s
            await at(15.0)
            await send(resolved(c, ms()))  # C idle since its first notification
            await at(18.75)
            await send(*(resolved(x, ms()) for x in b))

            def complete() -> bool:
                return len(rx.at("/am")) >= 8 and len(rx.at("/ours")) >= 8

            await until(complete, 30, "8 notifications on each side")
            await asyncio.sleep(GROUP_INTERVAL_S + 0.5)  # one more interval: an extra notification would come now
            stats = pusher.stats
        await producer.stop()

    am, ours = by_group(rx.at("/am")), by_group(rx.at("/ours"))
    ga, gb, gc = ('{}:{alertname="river_flood", feed="water_level"}',
                  '{}:{alertname="pm25_high", feed="air_quality_pm25"}',
                  '{}:{alertname="connection_lost", feed="gold_price"}')
    f, r = "firing", "resolved"
    # what Alertmanager said, in words, before comparing byte for byte
    assert {k: [summary(p) for p in v] for k, v in am.items()} == {
        ga: [(f, [("01", f), ("48", f), ("79", f)]),
             (f, [("01", r), ("46", f), ("48", f), ("79", f)]),
             (r, [("46", r), ("48", r), ("79", r)])],
        gb: [(f, [("01", f), ("79", f)]), (f, [("01", f), ("31", f), ("79", f)]),
             (r, [("01", r), ("31", r), ("79", r)])],
        gc: [(f, [("00", f)]), (r, [("00", r)])],
    }, {k: [summary(p) for p in v] for k, v in am.items()}
    # the same notifications: groupKey, groupLabels, status, receiver, common labels and annotations, and every
    # alert's labels, annotations, startsAt, endsAt, generatorURL and fingerprint
    assert ours == am
    assert stats.failures == 0 and stats.alerts_sent >= 6 + 2 + 4 + 1 + 3

    # timing: where the semantics differ (README), measured
    def arrivals(path: str, group: str) -> list[float]:
        return [round(h.at - t0, 2) for h in rx.at(path) if orjson.loads(h.body)["groupKey"] == group]

    timing = {g: {"alertmanager": arrivals("/am", g), "ours": arrivals("/ours", g)} for g in (ga, gb, gc)}
    print("arrivals after t0 (s):", orjson.dumps(timing).decode())
    # startsAt older than group_wait: Alertmanager notifies at once, we gather for group_wait
    assert timing[gc]["alertmanager"][0] < GROUP_WAIT_S - 0.5 <= timing[gc]["ours"][0] - 0.5
    # a change to a group idle longer than group_interval: we notify at once, Alertmanager at its next tick
    b_am, b_ours = timing[gb]["alertmanager"][1] - (t_b3 - t0), timing[gb]["ours"][1] - (t_b3 - t0)
    assert b_ours < 1.0 and b_am > 1.0, (b_ours, b_am)


async def test_pusher_retries_until_alertmanager_is_up_and_keeps_alerts_alive(broker: str, make_settings,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    """Alertmanager down when the alerts come: the pusher fails, counts, backs off and retries, the notifier
    runs on; once Alertmanager is up it holds the firing alerts (a silenced one too: its silences are its own),
    their endsAt moved forward at every resend, and a resolve ends one."""
    port = free_port()
    am_url = f"http://127.0.0.1:{port}"
    settings = make_settings(kafka_bootstrap=broker, notify_signing_key=signing_key(), alertmanager_url=am_url,
                             alertmanager_resend_s=1.0, notify_backoff_s=0.1, notify_backoff_max_s=0.4)
    now = int(time.time() * 1000)
    firing = [am_alert("river_flood", "water_level", p, starts_at=now) for p in ("01", "79")]
    firing[1]["silenced"] = True
    with http_receiver() as rx:
        async with running(settings) as notifier:
            pusher = notifier.alertmanager
            assert pusher is not None
            await publish(settings, ALERTS_TOPIC, firing)
            await until(lambda: pusher.stats.retries >= 3, 15, "failed pushes, retried")
            assert pusher.stats.requests == 0 and "ConnectError" in pusher.stats.last_error
            with alertmanager(tmp_path, rx.url("/am"), port=port):

                def active() -> dict[str, dict[str, Any]]:
                    alerts = httpx.get(f"{am_url}/api/v2/alerts", params={"active": "true"}, timeout=2).json()
                    return {a["labels"]["province"]: a for a in alerts if a["status"]["state"] != "unprocessed"}

                got = await until(lambda: len(active()) == 2 and active(), 15, "both alerts in Alertmanager")
                assert got["79"]["labels"]["alertname"] == "river_flood" and got["79"]["status"]["state"] == "active"
                assert got["01"]["generatorURL"] == "https://cr.example.vn/alerts/river_flood/01"
                assert got["01"]["annotations"]["summary"] == "river_flood in 01"
                first_end = got["01"]["endsAt"]
                await asyncio.sleep(2.5)  # two resends
                assert active()["01"]["endsAt"] > first_end, "a firing alert's endsAt is refreshed"
                await publish(settings, ALERTS_TOPIC, [resolved(firing[0], int(time.time() * 1000))])
                await until(lambda: set(active()) == {"79"}, 10, "the resolve to reach Alertmanager")
            stats = pusher.stats
    assert stats.failures >= 3 and stats.refused == 0 and stats.requests >= 3
    print(f"pusher: {stats}")
