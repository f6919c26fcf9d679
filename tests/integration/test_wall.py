"""GET /wall in headless Chromium, against the API served for real (uvicorn) on seeded chDB data.

The seed is realistic and known: the simulator's readings for every expected series (2,000+) over three
minutes, except one feed left silent and one station left out (a degraded feed); closed 1-minute windows
for the tiles' trends; alert events (the materialized view fills alerts_current) in every state. Readings
reach up to 60 s ahead of the clock (inside MAX_FUTURE_S), so no series crosses a staleness or 5-minute
boundary while the test runs and the page, /overview and the expected figures must agree exactly.

Chromium is Debian's (/usr/bin/chromium; `make test` installs it), driven by Playwright without any
browser download and with every request to another host refused (tests/integration/browser.py, shared with the
/docs test). UPDATE_SCREENSHOT=1 also copies the screenshot to docs/wall.png (the README's).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from playwright.sync_api import Page

from api.wall import COMMUNES_SHOWN, TREND_MINUTES
from api.wall_stream import WallHub
from controlroom.broker import free_port
from controlroom.catalog import HEADLINE_FEEDS, Catalog
from controlroom.communes import COMMUNE_DIM
from controlroom.schema import (
    ALERTS_TOPIC,
    INCIDENTS_TOPIC,
    IncidentMember,
    alert_message,
    dims_key,
    fingerprint,
    incident_message,
    window_message,
)
from producers.simulator import Simulator
from sinks.writer import SinkWriter
from tests.conftest import register_secret
from tests.integration.browser import LiveApi, chromium, open_wall, serve_api
from tests.integration.pipeline import sent_record

pytestmark = pytest.mark.integration

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "wall.png"
MIN = 60_000
SILENT_FEED = "sar_incidents"  # no reading at all
DEGRADED = ("water_level", "01", "station=s2")  # one station of one province left out
CRITICAL_RGB = "rgb(230, 57, 70)"  # --critical in wall.css
INCIDENT_RGB = "rgb(255, 255, 255)"  # --incident in wall.css: the ring around a province with an open incident


@dataclass
class WallApi(LiveApi):
    @property
    def hub(self) -> WallHub:
        hub: WallHub = self.app.state.api.wall_hubs["controlroom"]
        return hub


@pytest.fixture()
def live_api(make_settings) -> Iterator[WallApi]:  # type: ignore[no-untyped-def]
    with serve_api(make_settings(embedded_sink=False, wall_refresh_s=1.0, api_port=free_port())) as api:
        yield WallApi(api.url, api.app, api.viewer)


# --- the seed --------------------------------------------------------------------------------------------


def alert(rule: str, feed: str, province: str, dims: dict[str, str], severity: str, states: list[str],
          summary: tuple[str, str], starts_ms: int) -> list[dict[str, Any]]:
    """The events of one alert, one per state in order (seq 1, 2, …): alerts_current keeps the last."""
    fp = fingerprint(rule, feed, province, ",".join(f"{k}={v}" for k, v in sorted(dims.items())))
    return [alert_message(fingerprint_=fp, rule_id=rule, rule_version=1, rule_type="threshold", severity=severity,
                          event=state, state=state, seq=seq, feed=feed, province=province, dims=dims,
                          summary_vi=summary[0], summary_en=summary[1], value=1.0, evidence={},
                          starts_at_ms=starts_ms, ends_at_ms=None if state != "resolved" else starts_ms + MIN,
                          event_at_ms=starts_ms + seq * 1000)
            for seq, state in enumerate(states, start=1)]


def seed(api: LiveApi, catalog: Catalog, now: int) -> dict[str, Any]:
    """Write the seed through the sink's own write path; return what the wall must show."""
    sim = Simulator(catalog, seed=7, start_ms=now - 3 * MIN)
    readings = []
    for topic, _key, raw in sim.between(now - 3 * MIN, now + MIN, step_ms=1000):
        doc = orjson.loads(raw)
        dkey = dims_key({k: v for k, v in doc["dims"].items() if k != COMMUNE_DIM})  # a commune names no series
        if doc["feed"] == SILENT_FEED or (doc["feed"], doc["province"], dkey) == DEGRADED:
            continue
        readings.append((topic, raw, doc))

    minute = now - now % MIN
    windows: dict[str, dict[int, float]] = {}
    for n, feed_id in enumerate(HEADLINE_FEEDS.values()):
        feed = catalog.feeds[feed_id]
        docs = [d for _t, _r, d in readings if d["feed"] == feed_id]
        level = (sum(d["value"] for d in docs) / 4 if feed.kind == "counter" else docs[-1]["value"]) or 1.0
        # 62 closed minutes (the sparkline's hour, and then some) with a known shape: a slope of its own per feed,
        # with a ripple
        slope = (0.012, -0.008, 0.004, 0.014, -0.004, 0.009, 0.0)[n]
        windows[feed_id] = {minute - (62 - i) * MIN: round(level * (1 + slope * (i - 31) + 0.04 * ((i + n) % 3)), 2)
                            for i in range(62)}

    alerts = [
        *alert("water_level_alarm", "water_level", "01", {"station": "s1"}, "critical", ["pending", "firing"],
               ("Mực nước Hà Nội 1.182 cm vượt báo động III", "Water level Hanoi 1,182 cm above alarm level III"),
               now - 25 * MIN),
        *alert("hotline_surge", "hotline_calls", "01", {"line": "113"}, "warning", ["firing"],
               ("Cuộc gọi 113 Hà Nội tăng đột biến", "Calls to 113 in Hanoi surging"), now - 12 * MIN),
        *alert("air_quality_bad", "air_quality_pm25", "79", {"station": "s1"}, "warning", ["firing"],
               ("Bụi mịn PM2.5 TP.HCM 82 µg/m³", "PM2.5 Ho Chi Minh City 82 µg/m³"), now - 40 * MIN),
        *alert("traffic_rising", "traffic_incidents", "48", {"severity": "serious"}, "info", ["firing"],
               ("Sự cố giao thông Đà Nẵng tăng", "Traffic incidents Da Nang rising"), now - 5 * MIN),
        *alert("fx_move", "fx_usd_vnd", "00", {}, "warning", ["firing"],
               ("Tỷ giá USD/VND biến động 1,2 %", "USD/VND moved 1.2 %"), now - 8 * MIN),
        # not on the wall: resolved, and still pending
        *alert("water_level_alarm", "water_level", "92", {"station": "s1"}, "critical",
               ["pending", "firing", "resolved"], ("đã hết", "over"), now - 60 * MIN),
        *alert("hotline_surge", "hotline_calls", "31", {"line": "115"}, "warning", ["pending"],
               ("đang chờ", "pending"), now - 2 * MIN),
    ]

    def member(a: dict[str, Any], signal: str) -> IncidentMember:
        return {"alert_id": a["alert_id"], "rule_id": a["rule_id"], "feed": a["feed"], "province": a["province"],
                "dims": a["dims"], "signal": signal, "severity": a["severity"], "state": "firing",
                "fired_at": a["event_at"], "joined_at": a["event_at"]}

    def incident(iid: str, type_id: str, province: str, severity: str, title: tuple[str, str],
                 members: list[IncidentMember], states: list[str], opened_ms: int) -> list[dict[str, Any]]:
        """The events of one incident (seq 1, 2, …): incidents_current keeps the last."""
        return [dict(incident_message(
            incident_id=iid, seq=seq, type_id=type_id, type_version=1, scope="province", province=province,
            severity=severity, event={"open": "opened", "acknowledged": "acknowledged"}.get(state, state),
            state=state, title_vi=title[0], title_en=title[1], members=members, opened_at_ms=opened_ms,
            resolved_at_ms=opened_ms + MIN if state == "resolved" else None, event_at_ms=opened_ms + seq * 1000,
            ack={"by": "op", "comment": ""} if state == "acknowledged" else None))
            for seq, state in enumerate(states, start=1)]

    by_rule = {(a["rule_id"], a["province"]): a for a in alerts}
    incidents = [
        *incident("f" * 16, "flood", "01", "critical", ("Lũ lụt – Thành phố Hà Nội", "Flooding – Hanoi"),
                  [member(by_rule[("water_level_alarm", "01")], "water_level"),
                   member(by_rule[("hotline_surge", "01")], "emergency_calls")], ["open"], now - 11 * MIN),
        *incident("e" * 16, "pollution_episode", "79", "warning",
                  ("Ô nhiễm không khí – Thành phố Hồ Chí Minh", "Air-pollution episode – Ho Chi Minh City"),
                  [member(by_rule[("air_quality_bad", "79")], "pm25")], ["open", "acknowledged"], now - 30 * MIN),
        # not on the wall: resolved
        *incident("d" * 16, "flood", "92", "critical", ("Lũ lụt – x", "Flooding – x"), [], ["open", "resolved"],
                  now - 60 * MIN),
    ]

    items: list[tuple[str, bytes]] = [(topic, raw) for topic, raw, _d in readings]
    for feed_id, per_minute in windows.items():
        kind = catalog.feeds[feed_id].kind
        province = "00" if catalog.feeds[feed_id].scope == "national" else "01"
        dims = {k: v[0] for k, v in catalog.feeds[feed_id].dims.items()}
        for start, value in per_minute.items():
            count = 1 if kind == "gauge" else 6
            items.append(("agg.1m", orjson.dumps(window_message(
                feed=feed_id, province=province, dims=dims, window_start_ms=start, window_s=60, count=count,
                total=value * count if kind == "gauge" else value, vmin=0.0, vmax=value, last=value,
                last_ts_ms=start + 50_000, closed_ms=start + 70_000, source_partition=0))))
    items += [(ALERTS_TOPIC, orjson.dumps(a)) for a in alerts]
    items += [(INCIDENTS_TOPIC, orjson.dumps(i)) for i in incidents]
    # one batch, distinct offsets: the sink's dedup token is per (topic, partition, offset range)
    SinkWriter(api.app.state.api.settings, catalog, api.app.state.api.warehouse).write(
        [sent_record(topic, 0, i, now, value) for i, (topic, value) in enumerate(items)])

    def total(feed: str, on_time: str | None = None) -> float:
        return sum(d["value"] for _t, _r, d in readings
                   if d["feed"] == feed and (on_time is None or d["dims"].get("on_time") == on_time))

    resolved, on_time = total("dvc_dossiers_resolved"), total("dvc_dossiers_resolved", "true")
    return {
        "docs": readings,
        "readings": len(readings),
        "counter_sums": {f: total(f) for f in HEADLINE_FEEDS.values() if catalog.feeds[f].kind == "counter"},
        "vn_index_last": max((d["ts"], d["value"]) for _t, _r, d in readings if d["feed"] == "vn_index")[1],
        "on_time_pct": round(100 * on_time / resolved, 2),
        "windows": windows,
        "firing_ids": {i for i, state in {a["alert_id"]: a["state"] for a in alerts}.items() if state == "firing"},
        "map": {"01": "critical", "79": "warning", "48": "info", "92": "none", "31": "none", "04": "none"},
        "incidents": [("f" * 16, "flood", "01", "open", 2), ("e" * 16, "pollution_episode", "79", "acknowledged", 1)],
    }


# --- the browser ------------------------------------------------------------------------------------------


def page_figures(page: Page) -> dict[str, Any]:
    return page.evaluate("""() => {
        // the vertices a tile's sparkline draws: those of its polylines, and its lone-minute dots
        const sparkPoints = (t) => [...t.querySelectorAll('svg.spark polyline')].reduce(
            (n, l) => n + l.getAttribute('points').trim().split(/\\s+/).length, 0)
            + t.querySelectorAll('svg.spark circle').length;
        return {
        generated_at: document.body.dataset.generatedAt,
        lang: document.documentElement.lang,
        title: document.querySelector('h1').textContent,
        tiles: [...document.querySelectorAll('#tiles .tile')].map(t => ({
            category: t.dataset.category, feed: t.dataset.feed, value: JSON.parse(t.dataset.value),
            trend: JSON.parse(t.dataset.trend), name: t.querySelector('.cat').textContent,
            text: t.querySelector('.value').textContent, points: sparkPoints(t)})),
        provinces: Object.fromEntries([...document.querySelectorAll('#map circle.province')].map(
            c => [c.dataset.code, {severity: c.dataset.severity, fill: getComputedStyle(c).fill}])),
        alerts: [...document.querySelectorAll('#alerts tbody tr')].map(r => ({
            id: r.dataset.alertId, severity: r.dataset.severity, province: r.dataset.province,
            summary: r.querySelector('.summary').textContent, place: r.querySelector('.prov').textContent})),
        alert_count: document.getElementById('alert-count').textContent,
        incidents: [...document.querySelectorAll('#incidents tbody tr')].map(r => ({
            id: r.dataset.incidentId, type: r.dataset.type, province: r.dataset.province, state: r.dataset.state,
            alerts: Number(r.dataset.alerts), cells: [...r.querySelectorAll('td')].map(td => td.textContent)})),
        incident_count: document.getElementById('incident-count').textContent,
        incident_rings: Object.fromEntries([...document.querySelectorAll('#map circle.incident-ring')].map(
            c => [c.dataset.code, getComputedStyle(c).stroke])),
        marked: [...document.querySelectorAll('#map circle.province')].filter(c => c.dataset.incident === '1')
            .map(c => c.dataset.code).sort(),
        boxes: Object.fromEntries(['tiles', 'map-panel', 'incidents-panel', 'alerts-panel', 'health-panel'].map(
            id => { const b = document.getElementById(id).getBoundingClientRect();
                    return [id, [b.left, b.top, b.right, b.bottom]]; })),
        scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
        feeds: Object.fromEntries([...document.querySelectorAll('#feeds .feed-cell')].map(
            c => [c.dataset.feed, c.dataset.status])),
        health: ['reporting', 'degraded', 'silent'].map(k => document.getElementById('h-' + k).textContent),
        on_time: JSON.parse(document.getElementById('ontime').dataset.value),
        on_time_text: document.getElementById('ontime').textContent,
        readings_5m: Number(document.getElementById('t-readings').dataset.value),
        stored_key: localStorage.getItem('controlroom.wall.key') !== null,
    }; }""")


def vi_number(x: float, decimals: int) -> str:
    """How the page writes a number in Vietnamese: '.' groups thousands, ',' before the decimals."""
    return f"{x:,.{decimals}f}".replace(",", "\x00").replace(".", ",").replace("\x00", ".")


def test_wall_in_chromium_matches_overview(live_api: WallApi, catalog: Catalog, tmp_path: Path) -> None:
    started = time.monotonic()
    expected = seed(live_api, catalog, int(time.time() * 1000))

    # the page and its files need no key (they hold no data); the stream does, in a header only
    page_resp = httpx.get(live_api.url + "/wall")
    assert page_resp.status_code == 200 and page_resp.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page_resp.headers["content-security-policy"]
    js = httpx.get(live_api.url + "/wall/static/wall.js").text
    css = httpx.get(live_api.url + "/wall/static/wall.css").text
    for text in (page_resp.text, css, js.replace('"http://www.w3.org/2000/svg"', "")):
        assert "http:" not in text and "https:" not in text and "//cdn" not in text  # nothing from elsewhere
    assert httpx.get(live_api.url + "/wall/static/app.py").status_code == 404
    assert httpx.get(live_api.url + "/wall/stream").status_code == 401
    assert httpx.get(live_api.url + "/wall/stream", headers={"Authorization": "Bearer cr_x_nope"}).status_code == 401

    with chromium(tmp_path / "chromium-profile", viewport={"width": 1920, "height": 1080}, locale="vi-VN",
                  timezone_id="Asia/Ho_Chi_Minh") as browser:
        page, watch = browser.page, browser.watch
        open_wall(page, live_api)
        shown = page_figures(page)
        overview = live_api.get("/overview")
        t_first = time.monotonic() - started

        # --- 7 tiles, figures = /overview = the seed -----------------------------------------------------
        feeds = {f["id"]: f for f in overview["feeds"]}
        assert [t["category"] for t in shown["tiles"]] == [c["id"] for c in overview["categories"]]
        assert len(shown["tiles"]) == 7
        for tile in shown["tiles"]:
            f = feeds[tile["feed"]]
            want = f["last_5m"]["sum"] if f["kind"] == "counter" else f["latest_value"]
            assert tile["value"] == want, tile
            if f["kind"] == "counter":
                assert tile["value"] == pytest.approx(expected["counter_sums"][tile["feed"]])
            else:
                assert tile["value"] == pytest.approx(expected["vn_index_last"])
        # trends: the seeded closed minutes, as /series (source agg) answers for the same range
        gen_ms = int(datetime.fromisoformat(shown["generated_at"].replace("Z", "+00:00")).timestamp() * 1000)
        to_ms = gen_ms - gen_ms % MIN
        for tile in shown["tiles"]:
            seeded = [v for t, v in sorted(expected["windows"][tile["feed"]].items())
                      if to_ms - TREND_MINUTES * MIN <= t < to_ms]
            assert len(seeded) >= TREND_MINUTES - 1
            assert len(tile["trend"]) == TREND_MINUTES == 60  # a slot per minute of the last hour
            assert [v for v in tile["trend"] if v is not None] == pytest.approx(seeded), tile["feed"]
            assert tile["points"] == len(seeded)  # drawn: one vertex per minute with a window
            series = live_api.get("/series", feed=tile["feed"], source="agg", step=60,
                                  **{"from": str(to_ms - TREND_MINUTES * MIN), "to": str(to_ms)})
            assert [v for v in tile["trend"] if v is not None] == \
                pytest.approx([p["value"] for p in series["points"] if p["value"] is not None])

        # --- the map: 34 provinces, each coloured by its worst firing alert ---------------------------
        assert len(shown["provinces"]) == 34 == len(catalog.provinces)
        for code, severity in expected["map"].items():
            assert shown["provinces"][code]["severity"] == severity, code
        assert sum(1 for p in shown["provinces"].values() if p["severity"] != "none") == 3
        assert shown["provinces"]["01"]["fill"] == CRITICAL_RGB
        assert shown["provinces"]["04"]["fill"] != CRITICAL_RGB

        # --- the firing alerts, worst first ----------------------------------------------------------
        assert {a["id"] for a in shown["alerts"]} == expected["firing_ids"] and len(shown["alerts"]) == 5
        assert [a["severity"] for a in shown["alerts"]] == ["critical", "warning", "warning", "warning", "info"]
        assert shown["alert_count"] == "5"
        hanoi = next(a for a in shown["alerts"] if a["severity"] == "critical")
        assert (hanoi["summary"], hanoi["place"]) == ("Mực nước Hà Nội 1.182 cm vượt báo động III",
                                                      "Thành phố Hà Nội")
        assert next(a for a in shown["alerts"] if a["province"] == "00")["place"] == "Toàn quốc"

        # --- the incidents tile: open and acknowledged ones, worst first; their provinces ringed on the map
        assert [(i["id"], i["type"], i["province"], i["state"], i["alerts"]) for i in shown["incidents"]] == \
            expected["incidents"]
        assert shown["incident_count"] == "2"
        flood = shown["incidents"][0]["cells"]
        assert flood[:3] == ["Lũ lụt", "Thành phố Hà Nội", "2 đang báo / 2"] and flood[4] == "Mới"
        assert flood[3].endswith(" phút") and int(flood[3].split()[0]) in (11, 12)  # opened 11 minutes ago
        assert shown["incidents"][1]["cells"][4] == "Đã tiếp nhận"
        assert shown["marked"] == ["01", "79"]
        assert shown["incident_rings"] == {"01": INCIDENT_RGB, "79": INCIDENT_RGB}
        # --- the layout still fits one 1920×1080 screen, panels side by side without overlap
        assert shown["scroll"] == [1920, 1080], shown["scroll"]
        boxes = shown["boxes"]
        assert all(b[0] >= 0 and b[2] <= 1920 and b[1] >= 0 and b[3] <= 1080 for b in boxes.values()), boxes
        assert boxes["incidents-panel"][3] < boxes["alerts-panel"][1]  # the tile above the alerts
        assert boxes["map-panel"][2] < boxes["incidents-panel"][0] and \
            boxes["incidents-panel"][2] < boxes["health-panel"][0]
        assert boxes["tiles"][3] < boxes["incidents-panel"][1]

        # --- feed health and the on-time rate: /overview's definitions --------------------------------
        assert shown["feeds"] == {f["id"]: f["status"] for f in overview["feeds"]}
        assert len(shown["feeds"]) == 25
        assert shown["feeds"][SILENT_FEED] == "silent" and shown["feeds"]["water_level"] == "degraded"
        assert shown["health"] == ["23", "1", "1"]
        assert shown["on_time"] == overview["public_services"]["on_time_rate_pct"] == expected["on_time_pct"]
        assert shown["on_time_text"] == vi_number(expected["on_time_pct"], 1) + " %"
        assert shown["readings_5m"] == overview["totals"]["readings_5m"] == expected["readings"]
        assert shown["lang"] == "vi" and shown["title"] == "Trung tâm điều hành quốc gia"
        assert shown["stored_key"]

        shot = tmp_path / "wall.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 20_000
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_SCREENSHOT)

        # --- one computation per refresh, whatever the number of screens -----------------------------
        second = browser.new_page()  # same profile: the stored key is used, no question asked
        second.goto(live_api.url + "/wall", wait_until="load")
        second.wait_for_selector("body[data-generated-at]", timeout=30_000)
        assert second.is_hidden("#key-dialog")
        assert len(live_api.hub.clients) == 2
        before, t0 = live_api.hub.computed, time.monotonic()
        # pushed, not reloaded (polled from here: the page's CSP forbids wait_for_function's eval)
        deadline = time.monotonic() + 15
        while page.evaluate("document.body.dataset.generatedAt") <= shown["generated_at"]:
            assert time.monotonic() < deadline, "no newer snapshot pushed to the page"
            time.sleep(0.1)
        time.sleep(3)
        computed, elapsed = live_api.hub.computed - before, time.monotonic() - t0
        assert 1 <= computed <= elapsed / 1.0 + 1  # WALL_REFRESH_S=1: never one per client
        second.close()

        # --- the English toggle -----------------------------------------------------------------------
        page.click("#lang")
        english = page_figures(page)
        assert english["lang"] == "en" and english["title"] == "National operations center"
        assert [t["name"] for t in english["tiles"]] == [c["name_en"] for c in overview["categories"]]
        assert "Water level Hanoi 1,182 cm above alarm level III" in [a["summary"] for a in english["alerts"]]
        assert "Hanoi" in [a["place"] for a in english["alerts"]]
        assert page.text_content("#alerts thead th") == "Severity"
        assert [i["cells"][0] for i in english["incidents"]] == ["Flooding", "Air-pollution episode"]
        assert english["incidents"][0]["cells"][1:3] == ["Hanoi", "2 firing / 2"]
        assert english["incidents"][1]["cells"][4] == "Acknowledged"
        page.screenshot(path=str(tmp_path / "wall-en.png"))
        assert watch.problems == []
    print(f"\nwall: {expected['readings']} readings seeded, first snapshot shown after {t_first:.1f} s, "
          f"whole test {time.monotonic() - started:.1f} s")


def test_stream_needs_a_viewer_key_and_ends_when_it_is_revoked(make_settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from api import sse
    from tests.integration.api_client import api_client

    monkeypatch.setattr(sse, "KEY_RECHECK_S", 0.5)
    with api_client(make_settings(embedded_sink=False, wall_refresh_s=0.2)) as (client, keys):
        assert client.get("/wall/stream").status_code == 401
        assert client.get("/wall/stream", headers=keys.header("agency")).status_code == 403  # ingest-only key
        store = client.app.state.api.security.keys  # type: ignore[attr-defined]
        key, meta = store.create(name="wall", role="viewer", created_by="test")
        register_secret(key.token)
        events: list[str] = []
        started = time.monotonic()
        with client.stream("GET", "/wall/stream", headers={"Authorization": f"Bearer {key.token}"}) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            for line in resp.iter_lines():
                if line.startswith("event:"):
                    events.append(line[6:].strip())
                if line.startswith("data:") and events == ["wall"]:
                    snap = orjson.loads(line[5:])
                    assert (len(snap["tiles"]), len(snap["provinces"]), len(snap["feeds"])) == (7, 34, 25)
                    store.revoke(meta["key_id"], by="test")
                    events.append("revoked")
                if time.monotonic() - started > 20:
                    break
        assert events[:2] == ["wall", "revoked"] and events[-1] == "auth"  # the stream told the screen, then ended
        assert not client.app.state.api.wall_hubs["controlroom"].clients  # type: ignore[attr-defined]


def province_figures(page: Page) -> dict[str, Any]:
    return page.evaluate("""() => ({
        path: location.pathname,
        name: document.getElementById('p-name').textContent,
        code: document.getElementById('p-name').dataset.code,
        national_hidden: getComputedStyle(document.getElementById('tiles')).display === 'none'
            && document.getElementById('map-panel').getClientRects().length === 0,
        tiles: [...document.querySelectorAll('#p-tiles .tile')].map(t => ({
            feed: t.dataset.feed, status: t.dataset.status, value: JSON.parse(t.dataset.value),
            trend: JSON.parse(t.dataset.trend), points: Number(t.querySelector('svg.spark').dataset.points),
            vertices: [...t.querySelectorAll('svg.spark polyline')].reduce(
                (n, l) => n + l.getAttribute('points').trim().split(/\\s+/).length, 0)
                + t.querySelectorAll('svg.spark circle').length})),
        alerts: [...document.querySelectorAll('#province-view #alerts tbody tr')].map(r => ({
            id: r.dataset.alertId, severity: r.dataset.severity, province: r.dataset.province})),
        alert_count: document.getElementById('alert-count').textContent,
        incidents: [...document.querySelectorAll('#province-view #incidents tbody tr')].map(
            r => r.dataset.incidentId),
        places: Object.fromEntries([...document.querySelectorAll('#p-places .place-feed')].map(b => [
            b.dataset.feed, [...b.querySelectorAll('.place')].map(
                r => [r.dataset.code, JSON.parse(r.dataset.value), Number(r.dataset.readings)])])),
        scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
    })""")


def test_wall_drills_down_to_a_province(live_api: WallApi, catalog: Catalog, tmp_path: Path) -> None:
    """/wall → a click on Hà Nội → its page: its 22 feeds with /series' figures and an hour's sparkline, its alerts
    and incident, where inside it (per commune, as the seed says), pushed live; then back to the nation."""
    now = int(time.time() * 1000)
    expected = seed(live_api, catalog, now)
    code = "01"
    mine = [d for _t, _r, d in expected["docs"] if d["province"] == code]

    with chromium(tmp_path / "chromium-profile", viewport={"width": 1920, "height": 1080}, locale="vi-VN",
                  timezone_id="Asia/Ho_Chi_Minh") as browser:
        page, watch = browser.page, browser.watch
        open_wall(page, live_api)
        page.click(f'#map a[data-code="{code}"] circle')  # the province on the national map
        page.wait_for_url(f"**/wall/province/{code}", timeout=10_000)
        page.wait_for_selector("#p-tiles .tile", timeout=30_000)  # the stored key: no second question
        shown = province_figures(page)

        assert shown["path"] == f"/wall/province/{code}" and shown["code"] == code
        assert shown["name"] == "Thành phố Hà Nội" and shown["national_hidden"]
        provincial = [f.id for f in catalog.feeds.values() if f.scope == "provincial"]
        assert [t["feed"] for t in shown["tiles"]] == provincial and len(provincial) == 22

        # --- each feed's figure: the province's readings as /series (raw) answers for it ---------------------
        lo, hi = str(now - 10 * MIN), str(now + 5 * MIN)
        for tile in shown["tiles"]:
            feed = catalog.feeds[tile["feed"]]
            if feed.kind == "counter":
                points = live_api.get("/series", feed=feed.id, province=code, source="raw", step=60,
                                      **{"from": lo, "to": hi})["points"]
                assert tile["value"] == pytest.approx(sum(p["value"] or 0 for p in points)), feed.id
                assert tile["value"] == pytest.approx(sum(d["value"] for d in mine if d["feed"] == feed.id))
            else:  # a gauge: the average of its series' latest values, as /overview says
                latest: dict[str, tuple[int, float]] = {}
                for d in mine:
                    if d["feed"] == feed.id:
                        key = dims_key({k: v for k, v in d["dims"].items() if k != COMMUNE_DIM})
                        latest[key] = max(latest.get(key, (0, 0.0)), (d["ts"], d["value"]))
                want = sum(v for _t, v in latest.values()) / len(latest)
                assert tile["value"] == pytest.approx(want), feed.id
        statuses = {t["feed"]: t["status"] for t in shown["tiles"]}
        assert statuses[SILENT_FEED] == "silent" and statuses["water_level"] == "degraded"  # station s2 left out
        assert statuses["electricity_load"] == "reporting"

        # --- the sparkline: an hour of closed minutes, = /series (agg) for the province -------------------------
        gen_ms = int(datetime.fromisoformat(page.evaluate("document.body.dataset.generatedAt")
                                            .replace("Z", "+00:00")).timestamp() * 1000)
        to_ms = gen_ms - gen_ms % MIN
        calls = next(t for t in shown["tiles"] if t["feed"] == "hotline_calls")  # its windows were seeded in 01
        series = live_api.get("/series", feed="hotline_calls", province=code, source="agg", step=60,
                              **{"from": str(to_ms - TREND_MINUTES * MIN), "to": str(to_ms)})
        want = [p["value"] for p in series["points"] if p["value"] is not None]
        assert len(calls["trend"]) == 60 and len(want) >= 59
        assert [v for v in calls["trend"] if v is not None] == pytest.approx(want)
        assert calls["points"] == calls["vertices"] == len(want)
        electricity = next(t for t in shown["tiles"] if t["feed"] == "electricity_load")
        assert electricity["points"] == electricity["vertices"] == 0  # no closed window seeded: nothing drawn

        # --- its alerts and its incident only ---------------------------------------------------------------
        assert sorted((a["severity"], a["province"]) for a in shown["alerts"]) == \
            [("critical", code), ("warning", code)]
        assert shown["alert_count"] == "2"
        assert shown["incidents"] == ["f" * 16]

        # --- where inside the province: per commune, the seed's sums (counters) and averages (gauges) -----------
        for feed_id in ("hotline_calls", "citizen_feedback", "water_level", SILENT_FEED):
            sums: dict[str, list[float]] = {}
            for d in mine:
                if d["feed"] == feed_id:
                    sums.setdefault(d["dims"][COMMUNE_DIM], []).append(d["value"])
            kind = catalog.feeds[feed_id].kind
            want_places = sorted(((c, sum(v) if kind == "counter" else round(sum(v) / len(v), 2), len(v))
                                  for c, v in sums.items()), key=lambda x: (-x[1], x[0]))[:COMMUNES_SHOWN]
            got = [tuple(x) for x in shown["places"][feed_id]]
            assert [(c, n) for c, _v, n in got] == [(c, n) for c, _v, n in want_places], feed_id
            # both sides round to 2 decimals, from sums added in different orders: one cent apart at most
            assert [v for _c, v, _n in got] == pytest.approx([v for _c, v, _n in want_places], abs=0.0100001)
            assert all(catalog.communes[c].province == code for c, _v, _n in got)
        assert shown["places"][SILENT_FEED] == [] and len(shown["places"]["hotline_calls"]) >= 3
        assert shown["scroll"] == [1920, 1080], shown["scroll"]
        page.screenshot(path=str(tmp_path / "province.png"))
        if os.environ.get("UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(tmp_path / "province.png", DOCS_SCREENSHOT.with_name("wall-province.png"))

        # --- live: a newer snapshot is pushed to the province page ---------------------------------------------
        first = page.evaluate("document.body.dataset.generatedAt")
        deadline = time.monotonic() + 15
        while page.evaluate("document.body.dataset.generatedAt") <= first:
            assert time.monotonic() < deadline, "no newer snapshot pushed to the province page"
            time.sleep(0.1)
        assert list(live_api.app.state.api.province_hubs) == [code] and live_api.hub.clients == set()

        # --- back to the nation -----------------------------------------------------------------------------
        page.click("#back")
        page.wait_for_url("**/wall", timeout=10_000)
        page.wait_for_selector("#tiles .tile", timeout=30_000)
        # leaving a page ends its open stream, which the browser reports as aborted: one per page left, nothing else
        assert [p.split("/wall/stream")[1] for p in watch.problems] == [" (net::ERR_ABORTED)",
                                                                         f"?province={code} (net::ERR_ABORTED)"]
        assert all(p.startswith(f"request failed: GET {live_api.url}/wall/stream") for p in watch.problems)
    assert httpx.get(live_api.url + "/wall/province/99").status_code == 404
    assert httpx.get(live_api.url + "/wall/stream?province=99",
                     headers={"Authorization": f"Bearer {live_api.viewer}"}).status_code == 404
