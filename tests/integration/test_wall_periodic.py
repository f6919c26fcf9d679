"""The wall's periodic half in headless Chromium, against the API served for real on chDB: the "Reports due /
overdue" tile and the indicator panel (plan versus actual for the headline indicators). What the page shows must be
exactly what GET /reports/compliance and GET /indicators/{id}/plan answer; a key scoped to a province sees its
own units only, on the wall as in the API.

The seed goes through the API's own doors: reports submitted with agency keys (late for the period overdue, on time
for the period due), yearly targets set by an admin, and 1-minute windows of a feed written by the sink's own path
(agg_1h, which the indicators read, is its materialized rollup).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.wall_stream import WallHub
from controlroom.broker import free_port
from controlroom.catalog import Catalog
from controlroom.indicators import HEADLINE_INDICATORS, default_indicators, period_of
from controlroom.reports import default_forms, due_periods
from controlroom.schema import now_ms, window_message
from producers.report_sim import figures
from sinks.writer import SinkWriter
from tests.conftest import register_secret
from tests.integration.browser import LiveApi, chromium, serve_api
from tests.integration.pipeline import sent_record

pytestmark = pytest.mark.integration

MIN = 60_000
FORMS = ("BC_NHIEMVU_THANG", "BC_CCHC_QUY")
FDI = [(province, value) for province in ("01", "79") for value in (1_500_000.0, 2_250_000.0)]


def key(api: LiveApi, role: str, **kw: Any) -> dict[str, str]:
    made, _ = api.app.state.api.security.keys.create(name=f"wall-{role}-{kw}", role=role, created_by="test", **kw)
    register_secret(made.token)
    return {"Authorization": f"Bearer {made.token}"}


def seed(api: LiveApi, catalog: Catalog, now: int) -> int:
    """Reports, targets and FDI windows; returns the year the panel shows."""
    year = int(period_of("year", now).label)
    admin = key(api, "admin")
    for province, value in ((None, 30_000_000.0), ("01", 8_000_000.0)):
        r = httpx.put(f"{api.url}/indicators/fdi_registered_m/targets/{year}", headers=admin, timeout=30,
                      json={"province": province, "value": value, "note": "test plan"})
        assert r.status_code in (200, 201), r.text
    hanoi, hcmc = key(api, "agency", agency="ioc_01", provinces=["01"]), key(api, "agency", agency="ioc_79",
                                                                              provinces=["79"])
    for code in FORMS:
        form = default_forms()[code]
        due, overdue = due_periods(form, now)
        national = key(api, "agency", agency=form.national_submitter)
        for headers, unit, period in ((hanoi, "01", overdue), (national, "00", overdue), (hcmc, "79", due)):
            if period is None:
                continue
            r = httpx.post(f"{api.url}/reports/{code}/{period.label}", headers=headers, timeout=30,
                           json={"unit": unit, "values": figures(form, unit, period, 5)})
            assert r.status_code == 201, r.text
    minute = now - now % MIN
    items = [orjson.dumps(window_message(
        feed="fdi_registered_capital", province=province, dims={}, window_start_ms=minute - (n + 2) * MIN,
        window_s=60, count=1, total=value, vmin=value, vmax=value, last=value, last_ts_ms=minute - (n + 2) * MIN + 1,
        closed_ms=minute, source_partition=0)) for n, (province, value) in enumerate(FDI)]
    SinkWriter(api.app.state.api.settings, catalog, api.app.state.api.warehouse).write(
        [sent_record("agg.1m", 0, i, now, raw) for i, raw in enumerate(items)])
    return year


def expected_reports(api: LiveApi, headers: dict[str, str], now: int) -> dict[str, dict[str, int]]:
    """The tile's totals as GET /reports/compliance counts them, form by form (the period overdue is its default)."""
    out = {stage: {"forms": 0, "expected": 0, "submitted": 0, "on_time": 0, "missing": 0}
           for stage in ("due", "overdue")}
    for form in default_forms().values():
        due, _ = due_periods(form, now)
        for stage, params in (("overdue", {}), ("due", {"period": due.label} if due else None)):
            if params is None:
                continue
            r = httpx.get(f"{api.url}/reports/compliance", params={"form": form.code, **params}, headers=headers)
            c = r.json()["forms"][0]
            out[stage]["forms"] += 1
            for k in ("expected", "submitted", "on_time", "missing"):
                out[stage][k] += c[k]
    return out


def stream_snapshot(api: LiveApi, headers: dict[str, str], timeout_s: float = 30.0) -> dict[str, Any]:
    """The first `wall` event of GET /wall/stream (a `wall-error` event fails the test)."""
    deadline = time.monotonic() + timeout_s
    with httpx.stream("GET", api.url + "/wall/stream", headers=headers, timeout=timeout_s) as r:
        assert r.status_code == 200
        buf = ""
        for chunk in r.iter_text():
            buf += chunk
            for block in buf.split("\n\n")[:-1]:
                event = next((x[7:] for x in block.split("\n") if x.startswith("event: ")), "")
                assert event != "wall-error", block
                if event == "wall":
                    return dict(orjson.loads(block.split("data: ", 1)[1]))
            assert time.monotonic() < deadline, f"no wall event in {timeout_s:.0f} s: {buf[:300]!r}"
    raise AssertionError("the stream ended without a wall event")


def plan_of(api: LiveApi, headers: dict[str, str], indicator: str, year: int, province: str | None) -> Any:
    params: dict[str, Any] = {"year": year, **({"province": province} if province else {})}
    r = httpx.get(f"{api.url}/indicators/{indicator}/plan", params=params, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture()
def live_api(make_settings) -> Any:  # type: ignore[no-untyped-def]
    with serve_api(make_settings(embedded_sink=False, wall_refresh_s=1.0, api_port=free_port())) as api:
        yield api


def test_reports_tile_and_indicator_panel_show_what_the_api_says(live_api: LiveApi, catalog: Catalog,
                                                                 tmp_path: Path) -> None:
    now = now_ms()
    year = seed(live_api, catalog, now)
    viewer = {"Authorization": f"Bearer {live_api.viewer}"}
    want = expected_reports(live_api, viewer, now)
    assert want["overdue"]["submitted"] >= 2 * len(FORMS) and want["overdue"]["on_time"] == 0  # the seed's, late

    with chromium(tmp_path / "profile", viewport={"width": 1920, "height": 1080}, locale="vi-VN",
                  timezone_id="Asia/Ho_Chi_Minh") as browser:
        page = browser.page
        page.goto(live_api.url + "/wall", wait_until="load")
        page.wait_for_selector("#key-dialog:not([hidden])", timeout=10_000)
        page.fill("#key-input", live_api.viewer)
        page.click("#key-submit")
        page.wait_for_selector("#indicators tbody tr", timeout=30_000)
        shown = page.evaluate("""() => {
            const p = document.getElementById('reports-panel');
            const box = (id) => { const b = document.getElementById(id).getBoundingClientRect();
                                  return [b.left, b.top, b.right, b.bottom]; };
            return {
              due: JSON.parse(p.dataset.due), overdue: JSON.parse(p.dataset.overdue),
              due_text: document.querySelector('#rep-due .n').textContent,
              overdue_text: document.querySelector('#rep-overdue .n').textContent,
              rows: [...document.querySelectorAll('#indicators tbody tr')].map(r => ({
                indicator: r.dataset.indicator, province: r.dataset.province,
                actual: JSON.parse(r.dataset.actualToDate), target: JSON.parse(r.dataset.target),
                pct: JSON.parse(r.dataset.actualPctOfPlan),
                cells: [...r.querySelectorAll('td')].map(td => td.textContent)})),
              year: document.getElementById('ind-year').textContent,
              boxes: Object.fromEntries(['reports-panel', 'indicators-panel', 'health-panel', 'ontime-panel',
                                         'alerts-panel'].map(id => [id, box(id)])),
              scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight],
            }; }""")
        # --- reports due / overdue: GET /reports/compliance's counts over every form -----------------------
        for stage in ("due", "overdue"):
            assert {k: shown[stage][k] for k in want[stage]} == want[stage], stage
        assert shown["overdue_text"] == f"{want['overdue']['missing']:,}".replace(",", ".")
        # --- the headline indicators, national, against their plan: GET /indicators/{id}/plan's figures ---
        assert shown["year"] == str(year)
        assert [r["indicator"] for r in shown["rows"]] == [i for i in HEADLINE_INDICATORS
                                                           if "national" in default_indicators()[i].levels]
        for r in shown["rows"]:
            plan = plan_of(live_api, viewer, r["indicator"], year, None)
            assert r["province"] == "00"
            assert (r["actual"], r["target"], r["pct"]) == (plan["actual_to_date"], plan["target"],
                                                            plan["actual_pct_of_plan"]), r["indicator"]
        fdi = next(r for r in shown["rows"] if r["indicator"] == "fdi_registered_m")
        assert fdi["actual"] == sum(v for _, v in FDI) and fdi["target"] == 30_000_000.0
        assert fdi["cells"][2] == "25 % KH"  # 7.5 M of 30 M
        assert next(r for r in shown["rows"] if r["indicator"] == "exports_m")["cells"][2] == "chưa có KH"
        # --- it all still fits one 1920x1080 screen, without overlap -----------------------------------------
        assert shown["scroll"] == [1920, 1080]
        b = shown["boxes"]
        assert all(x[0] >= 0 and x[2] <= 1920 and x[1] >= 0 and x[3] <= 1080 for x in b.values()), b
        assert b["ontime-panel"][2] < b["reports-panel"][0] and b["reports-panel"][3] < b["indicators-panel"][1]
        assert b["indicators-panel"][3] < b["health-panel"][1] and b["alerts-panel"][2] < b["reports-panel"][0]
        page.screenshot(path=str(tmp_path / "wall-periodic.png"))
        page.click("#lang")
        assert page.text_content("#rep-overdue .what") == "overdue, missing"
        assert browser.watch.problems == []

    # --- a key scoped to Hà Nội: its units (00 and 01) and its province's indicators, as the API gives them ----
    scoped = key(live_api, "viewer", provinces=["01"])
    snap = stream_snapshot(live_api, scoped)
    want = expected_reports(live_api, scoped, now)
    for stage in ("due", "overdue"):
        assert {k: snap["reports"][stage][k] for k in want[stage]} == want[stage], stage
    assert want["overdue"]["expected"] == 2 * want["overdue"]["forms"]  # 00 and 01
    assert {r["province"] for r in snap["indicators"]} == {"01"}  # no national total: it sums other provinces
    for r in snap["indicators"]:
        plan = plan_of(live_api, scoped, r["indicator"], year, "01")
        assert (r["actual_to_date"], r["target"]) == (plan["actual_to_date"], plan["target"]), r["indicator"]
    fdi = next(r for r in snap["indicators"] if r["indicator"] == "fdi_registered_m")
    assert (fdi["actual_to_date"], fdi["target"]) == (3_750_000.0, 8_000_000.0)  # Hà Nội's windows, its plan
    hubs: dict[str, WallHub] = live_api.app.state.api.wall_hubs
    assert len(hubs) == 2  # the national wall and the scope's: each reads its own
