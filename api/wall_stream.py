"""GET /wall (the built-in live wall page), GET /wall/province/{code} (a province's page) and GET /wall/stream
(their snapshots, as Server-Sent Events: event `wall`, or `province` with ?province=CODE).

One task per API process (WallHub) computes the wall snapshot every WALL_REFRESH_S seconds with /overview's,
/alerts', /series' and /incidents' own queries (see api/wall.py), serialises it once and fans the same bytes
out to every connected screen: ten screens cost what one costs. The task runs only while a screen is connected. A slow
screen keeps only the newest snapshot (older ones are dropped: a wall needs the present, not a backlog).

Authentication (the project's model: every read needs a key with the viewer role):
- The page and its static files (/wall, /wall/static/*) carry no data, so they load without a key.
- The page asks once for a viewer key, keeps it in the browser's localStorage, and sends it as
  `Authorization: Bearer …` on a fetch()-based SSE reader (EventSource cannot send headers).
- Never `?key=` in the URL: URLs end up in access logs, proxy logs and browser history.
- A strict Content-Security-Policy on the page (scripts only from this origin, no inline script) is what
  keeps other scripts away from the stored key. A revoked key ends an open stream within KEY_RECHECK_S.
- Give a wall screen its own viewer key (POST /admin/keys, role viewer): read-only, revocable alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from api.agencies_sql import contract_day_sql, daily_scores_sql
from api.alerts_sql import alerts_sql
from api.auth import require
from api.incidents_sql import incidents_sql
from api.indicators import values_by_unit  # the API's own: the panel shows what /indicators/{id}/plan says
from api.indicators_sql import targets_sql
from api.overview import feed_figures, read_series_latest
from api.overview_cache import overview_cache
from api.reports_sql import submitted_reports_sql
from api.scope import provinces_of, scoped_catalog
from api.series_sql import communes_sql, trends_sql
from api.sse import sse_frame, sse_response
from api.state import ApiState, api_state
from api.wall import (
    ALERTS_READ,
    INCIDENT_STATES,
    INCIDENTS_READ,
    build_agencies,
    build_province,
    build_wall,
    indicator_rows,
    place_feeds,
    report_periods,
    reports_tile,
    trend_days,
    trend_window,
    wall_agencies,
)
from controlroom.catalog import HEADLINE_FEEDS, NATIONAL, Catalog
from controlroom.indicators import HEADLINE_INDICATORS, default_indicators, period_of, year_periods
from controlroom.logs import get_logger
from controlroom.reports import default_forms
from controlroom.schema import ms_to_iso
from controlroom.security import Principal

log = get_logger("wall")
router = APIRouter(tags=["wall"])
STATIC = {  # the only files served under /wall/static (vendored in the package: api/static/wall)
    "wall.css": "text/css; charset=utf-8",
    "wall.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _asset(name: str) -> bytes:
    return (resources.files("api") / "static" / "wall" / name).read_bytes()


Snapshot = Callable[[int], Awaitable[dict[str, Any]]]
PERIODIC_REFRESH_S = 30.0  # reports and monthly indicators change slowly: read twice a minute, not every refresh


async def _trends(state: ApiState, db: str, feeds: list[str], province: str | None,
                  window: tuple[int, int]) -> dict[str, list[dict[str, Any]]]:
    """The sparklines' rows per feed, in one query (trends_sql)."""
    out: dict[str, list[dict[str, Any]]] = {f: [] for f in feeds}
    for r in await state.query(trends_sql(db, feeds, province, *window)):
        out[str(r["feed"])].append(r)
    return out


async def _alerts_and_incidents(state: ApiState, db: str, province: str | None) -> tuple[list[dict[str, Any]],
                                                                                        list[dict[str, Any]]]:
    """Firing alerts (/alerts' query) and open incidents (/incidents' query), of one province or all."""
    firing = await state.query(alerts_sql(db, states=("firing",), severity=None, feed=None, province=province,
                                          limit=ALERTS_READ))
    incidents = await state.query(incidents_sql(db, states=INCIDENT_STATES, province=province, type_id=None,
                                                limit=INCIDENTS_READ))
    return firing, incidents


async def periodic_figures(state: ApiState, catalog: Catalog, now_ms: int) -> dict[str, Any]:
    """The reports tile and the indicator panel of a wall showing `catalog`'s provinces. Read from the project's
    database (submissions carry a unit, not a province column: a scope's views hold none of them), limited here
    as GET /reports/compliance and /indicators limit a scoped key: its provinces, and the national figures only
    for a national wall (a national total sums other provinces)."""
    db = state.warehouse.database
    scoped = set(catalog.provinces) != set(state.catalog.provinces)
    periods = report_periods(default_forms(), now_ms)
    rows = await state.query(submitted_reports_sql(db, 0, [(f.code, p.label) for f, _, p in periods]))
    reports = reports_tile(periods, [NATIONAL, *sorted(catalog.provinces)], rows, now_ms)
    units = sorted(catalog.provinces) if scoped else [NATIONAL]
    year = int(period_of("year", now_ms).label)
    found = []
    for ind in (default_indicators()[i] for i in HEADLINE_INDICATORS):
        mine = [u for u in units if ("national" if u == NATIONAL else "provincial") in ind.levels]
        if not mine:
            continue
        periods_ = year_periods(ind, year)
        values = await values_by_unit(state, ind, None if scoped else NATIONAL, periods_)
        targets = {str(r["prov"]): float(r["value"]) for r in await state.query(targets_sql(db, ind.id, year, None))}
        found += [{"indicator": ind, "unit": u, "year": year, "periods": periods_,
                   "values": values.get(u, [None] * len(periods_)), "target": targets.get(u)} for u in mine]
    return {"reports": reports, "indicators": indicator_rows(found, now_ms)}


def national_snapshot(state: ApiState, overview: Callable[[], Awaitable[dict[str, Any]]], db: str,
                      catalog: Catalog) -> Snapshot:
    """The national wall; `overview` is /overview's shared snapshot: the wall shows exactly what /overview says.
    `db` is the project's database or a province scope's views (api/scope.py), `catalog` the provinces it shows."""
    periodic: dict[str, Any] = {}
    read_at = [-PERIODIC_REFRESH_S]

    async def snapshot(now_ms: int) -> dict[str, Any]:
        doc = await overview()
        firing, incidents = await _alerts_and_incidents(state, db, None)
        window = trend_window(now_ms)
        trends = await _trends(state, db, list(HEADLINE_FEEDS.values()), None, window)
        if time.monotonic() - read_at[0] >= PERIODIC_REFRESH_S:
            periodic.update(await periodic_figures(state, catalog, now_ms))
            read_at[0] = time.monotonic()
        return build_wall(catalog, doc, firing, trends, refresh_s=state.settings.wall_refresh_s,
                          incidents=incidents, trend_from_ms=window[0], periodic=periodic)

    return snapshot


AgencyRows = tuple[list[dict[str, Any]], list[dict[str, Any]]]
# the agencies' figures move by the hour, and reading them costs about 0.5 s on 30 days of history (README): a hub
# reads them at most once a minute, not at every refresh
AGENCY_REFRESH_S = 60.0


def agency_reader(state: ApiState, db: str) -> Callable[[list[str]], Awaitable[AgencyRows]]:
    """Daily scores over `days` and today's contract figures (api/agencies_sql.py) of every body, re-read when the
    days change or AGENCY_REFRESH_S has passed."""
    memo: dict[str, Any] = {}

    async def read(days: list[str]) -> AgencyRows:
        now = time.monotonic()
        if memo.get("days") != days or now - float(memo["at"]) >= AGENCY_REFRESH_S:
            daily = await state.query(daily_scores_sql(db, days[0]))
            memo.update(days=days, at=now, rows=(daily, await state.query(contract_day_sql(db, days[-1]))))
        rows: AgencyRows = memo["rows"]
        return rows

    return read


def agencies_snapshot(state: ApiState, db: str, provinces: frozenset[str] | None) -> Snapshot:
    """The agencies view: every body's score today, trend and worst contract, read from the caller's database (a
    province scope's views hold its centers' figures only: `provinces` keeps the rows to those)."""

    read = agency_reader(state, db)

    async def snapshot(now_ms: int) -> dict[str, Any]:
        days = trend_days(now_ms)
        daily, contracts = await read(days)
        return build_agencies(state.catalog, daily, contracts, days=days, generated_at=ms_to_iso(now_ms),
                              refresh_s=state.settings.wall_refresh_s, provinces=provinces)

    return snapshot


def province_snapshot(state: ApiState, code: str) -> Snapshot:
    """One province's page: /overview's figures over its series, its alerts and incidents, sparklines, communes.
    Read from the project's database: a caller sees a province page only when the province is in its scope
    (wall_stream), and then every row of that province is its to read."""

    read = agency_reader(state, state.warehouse.database)

    async def snapshot(now_ms: int) -> dict[str, Any]:
        db, catalog = state.warehouse.database, state.catalog
        rows = await read_series_latest(state.query, db, catalog, now_ms)
        feeds = feed_figures(catalog, rows, code, now_ms)
        firing, incidents = await _alerts_and_incidents(state, db, code)
        window = trend_window(now_ms)
        trends = await _trends(state, db, [f["id"] for f in feeds], code, window)
        communes = await state.query(communes_sql(db, place_feeds(catalog), code, window[0]))
        days = trend_days(now_ms)
        agencies = wall_agencies(catalog, *await read(days), days, frozenset({code}))
        return build_province(catalog, code, feeds, firing, trends, communes, generated_at=ms_to_iso(now_ms),
                              refresh_s=state.settings.wall_refresh_s, trend_from_ms=window[0], incidents=incidents,
                              agencies=agencies)

    return snapshot


class WallHub:
    """Computes a snapshot once per refresh and fans it out: one per API process and database read for the national
    wall (ApiState.wall_hubs: the project's, each province scope's, and the agencies view's of each), one per
    province page being watched (ApiState.province_hubs)."""

    def __init__(self, state: ApiState, snapshot: Snapshot, event: str = "wall") -> None:
        self.state = state
        self.snapshot = snapshot
        self.event = event  # the SSE event name its snapshots go out as
        self.refresh_s = state.settings.wall_refresh_s
        self.clients: set[asyncio.Queue[bytes]] = set()
        self.latest: bytes | None = None
        self.computed = 0  # snapshots computed by this process (tests check there is no per-client work)
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=2)
        if self.latest is not None and self._task is not None and not self._task.done():
            queue.put_nowait(self.latest)  # a new screen shows the current wall at once
        self.clients.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="wall-hub")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self.clients.discard(queue)

    def publish(self, frame: bytes) -> None:
        for queue in list(self.clients):
            if queue.full():  # a stalled screen: drop its older snapshot, keep the newest
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(frame)

    async def _run(self) -> None:
        while self.clients:
            started = time.monotonic()
            try:
                snap = await self.snapshot(time.time_ns() // 1_000_000)
                self.computed += 1
                self.latest = sse_frame(self.event, snap)
                self.publish(self.latest)
            except Exception as exc:  # a warehouse hiccup: screens keep the last wall and are told; next try later
                log.error("wall snapshot failed", error=str(exc)[:300])
                self.publish(sse_frame("wall-error", {"detail": "warehouse unavailable"}))
            await asyncio.sleep(max(0.2, self.refresh_s - (time.monotonic() - started)))

    async def close(self) -> None:
        self.clients.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def hub_of(request: Request, province: str | None = None, view: str | None = None) -> WallHub:
    """The national hub of the caller's database (national, or its province scope's views), its agencies view's, or
    a province page's hub; created on first use."""
    state = api_state(request)
    if view == "agencies":
        database = await state.database_for(request)
        key = f"agencies:{database}"  # beside the national hubs, one per database read
        if key not in state.wall_hubs:
            scope = provinces_of(getattr(request.state, "principal", None)) or None
            state.wall_hubs[key] = WallHub(state, agencies_snapshot(state, database, scope), "agencies")
        return state.wall_hubs[key]
    if province is not None:
        if province not in state.province_hubs:
            state.province_hubs[province] = WallHub(state, province_snapshot(state, province), "province")
        return state.province_hubs[province]
    cache = await overview_cache(request)
    database = await state.database_for(request)
    hub = state.wall_hubs.get(database)
    if hub is None:

        async def overview() -> dict[str, Any]:
            return (await cache.get(wait=True)).doc

        catalog = scoped_catalog(state.catalog, provinces_of(getattr(request.state, "principal", None)))
        hub = WallHub(state, national_snapshot(state, overview, database, catalog))
        state.wall_hubs[database] = hub
    return hub


def _province_param(request: Request, province: str | None) -> str | None:
    if province is not None and province not in api_state(request).catalog.provinces:
        raise HTTPException(404, f"no province {province[:8]!r}")
    return province


def _page() -> Response:
    return Response(_asset("index.html"), media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": PAGE_CSP})


@router.get("/wall", summary="The live national wall (HTML; asks for a viewer key once)",
            responses={200: {"content": {"text/html": {}}}})
async def wall_page() -> Response:
    return _page()


@router.get("/wall/province/{code}", summary="A province's page of the live wall (HTML; its feeds, alerts, communes)",
            responses={200: {"content": {"text/html": {}}}, 404: {"description": "no such province"}})
async def province_page(request: Request, code: str) -> Response:
    _province_param(request, code)
    return _page()  # the same page: wall.js reads the province from the address


@router.get("/wall/agencies", summary="The live wall's agencies view (HTML): each body's quality score today, its "
                                      "week's trend and its worst contract",
            responses={200: {"content": {"text/html": {}}}})
async def agencies_page() -> Response:
    return _page()  # the same page: wall.js reads the view from the address


@router.get("/wall/static/{name}", include_in_schema=False)
async def wall_static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    return Response(_asset(name), media_type=STATIC[name])


# Not in the OpenAPI schema: a never-ending stream only stalls schema-driven clients and fuzzers (README documents it).
@router.get("/wall/stream", summary="Wall snapshots live (Server-Sent Events, event `wall`)", include_in_schema=False)
async def wall_stream(request: Request, who: Annotated[Principal, Depends(require("viewer"))],
                      province: str | None = None, view: Literal["agencies"] | None = None) -> StreamingResponse:
    code = _province_param(request, province)
    if code is not None and who.provinces and code not in who.provinces:
        raise HTTPException(404, f"no province {code!r} for this key")  # as if it did not exist: scoped keys
    hub = await hub_of(request, code, view)
    queue = hub.subscribe()
    return sse_response(request, queue, lambda: hub.unsubscribe(queue), lambda frame: (frame, False))
