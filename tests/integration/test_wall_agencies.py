"""The wall's agencies view (/wall/agencies) and a province page's center score, in headless Chromium against the API
served for real on seeded chDB: each body's score today as GET /agencies says, worst first, its week's trend from the
daily scores, its worst contract; the national wall links to it; the whole view fits one 1920×1080 screen."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from api.agencies_sql import vn_day
from api.wall import AGENCY_TREND_DAYS
from controlroom.broker import free_port
from controlroom.catalog import Catalog
from sinks.rows import AGG
from tests.integration.browser import LiveApi, chromium, open_wall, serve_api
from tests.integration.test_contract_measures import insert, window_row

pytestmark = pytest.mark.integration
HOUR = 3_600_000


@pytest.fixture()
def live_api(make_settings) -> Iterator[LiveApi]:  # type: ignore[no-untyped-def]
    with serve_api(make_settings(embedded_sink=False, wall_refresh_s=1.0, api_port=free_port())) as api:
        yield api


def seed(api: LiveApi, catalog: Catalog, now: int) -> None:
    """This hour's first 30 minutes: hydromet sends all it promised, Ho Chi Minh City's center half its series, the
    rest nothing; the same hour a day earlier: hydromet alone, so its trend has two points."""
    hour = now // HOUR * HOUR
    water, hcmc = catalog.contracts["hydromet/water_level"], catalog.contracts["ioc_79/citizen_feedback"]
    rows: list[dict[str, Any]] = []
    for start, series, per_window, agency in ((hour, water.series, 1, "hydromet"),
                                              (hour, hcmc.series[:2], 2, "ioc_79"),
                                              (hour - 24 * HOUR, water.series[:34], 1, "hydromet")):
        at = datetime.fromtimestamp(start / 1000, UTC)
        feed = "water_level" if agency == "hydromet" else "citizen_feedback"
        rows += [window_row(feed, p, k, at + timedelta(minutes=m), per_window, agency)
                 for p, k in series for m in range(30)]
    insert(api.app.state.api.warehouse, AGG, rows)


def test_agencies_view_in_chromium_matches_the_api(live_api: LiveApi, catalog: Catalog, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    seed(live_api, catalog, now)
    listed = {b["id"]: b for b in live_api.get("/agencies")}
    history = {h["day"]: h["score"] for h in live_api.get("/agencies/hydromet", days=AGENCY_TREND_DAYS)["history"]}
    with chromium(tmp_path / "profile", viewport={"width": 1920, "height": 1080}, locale="vi-VN",
                  timezone_id="Asia/Ho_Chi_Minh") as browser:
        page, watch = browser.page, browser.watch
        open_wall(page, live_api)
        page.click("#to-agencies")  # the national wall links to the view
        page.wait_for_url("**/wall/agencies", timeout=10_000)
        page.wait_for_selector("#agencies .agency", timeout=30_000)
        shown = page.evaluate("""() => ({
            cards: [...document.querySelectorAll('#agencies .agency')].map(c => ({
                id: c.dataset.agency, score: JSON.parse(c.dataset.score), trend: JSON.parse(c.dataset.trend),
                worst: c.dataset.worst, text: c.querySelector('.score').textContent,
                points: Number(c.querySelector('svg.spark').dataset.points),
                visible: c.getBoundingClientRect().bottom <= 1080})),
            national_hidden: getComputedStyle(document.getElementById('tiles')).display === 'none',
            sub: document.getElementById('a-sub').textContent,
            scroll: [document.documentElement.scrollWidth, document.documentElement.scrollHeight]})""")
        page.screenshot(path=str(tmp_path / "agencies.png"))
        page.goto(live_api.url + "/wall/province/79", wait_until="load")
        page.wait_for_selector("#p-tiles .tile", timeout=30_000)
        center = page.evaluate("""() => ({score: JSON.parse(document.getElementById('p-agency').dataset.score),
                                          text: document.getElementById('p-agency').textContent})""")
        # leaving a page ends its open stream, which the browser reports as aborted: one per page left, nothing else
        assert [p.split("/wall/stream")[1] for p in watch.problems] == [" (net::ERR_ABORTED)",
                                                                         "?view=agencies (net::ERR_ABORTED)"]

    cards = {c["id"]: c for c in shown["cards"]}
    with_contract = {c.agency for c in catalog.contracts.values()}
    assert set(cards) == with_contract and len(cards) == 50  # the 16 central bodies with a feed and 34 centers
    for agency, card in cards.items():
        assert card["score"] == pytest.approx(listed[agency]["score_today"]), agency
    scores = [c["score"] for c in shown["cards"]]
    assert scores == sorted(scores)  # worst first
    assert cards["hydromet"]["score"] == pytest.approx(100) and cards["hydromet"]["text"] == "100"
    assert 0 < cards["ioc_79"]["score"] < 100 and cards["ioc_79"]["worst"] == "citizen_feedback"
    days = [vn_day(now, back) for back in range(AGENCY_TREND_DAYS - 1, -1, -1)]
    assert cards["hydromet"]["trend"] == pytest.approx([history.get(d) for d in days])
    assert cards["hydromet"]["points"] == sum(1 for d in days if d in history) == 2  # yesterday's hour and today's
    # silent in both received hours (Control Room received hydromet's readings then): 0 both days
    assert cards["moh"]["score"] == 0 and cards["moh"]["trend"][-2:] == [0, 0]
    assert shown["national_hidden"] and all(c["visible"] for c in shown["cards"])
    assert shown["scroll"] == [1920, 1080], shown["scroll"]
    assert "· 50 cơ quan được chấm · 49 dưới 80" in shown["sub"]  # every body judged; all but hydromet below 80
    assert center["score"] == pytest.approx(listed["ioc_79"]["score_today"]) and "Điểm" in center["text"]
