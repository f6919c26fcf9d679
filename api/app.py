"""The Control Room HTTP API (FastAPI).

In embedded mode (chDB) this process owns the warehouse path, so it also runs the sink: the
lifespan starts SinkWriter as a background task and the endpoints read through the same warehouse.
Warehouse calls block, so they run in worker threads; the event loop stays free for the sink.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response

from api import admin, alerts, alerts_stream, ingest, query_route, wall_stream
from api.auth import HardeningMiddleware, Security, require
from api.keystore import AuditLog, KeyStore
from api.models import FeedsOut, Health, Overview, ProvinceOut, SeriesOut, SinkHealth
from api.overview_cache import overview_cache
from api.params import MAX_STEP_S, MIN_STEP_S, ParamError, build_series_query
from api.readonly_sql import AnalystQueries
from api.series_sql import ping_sql, series_sql
from controlroom.catalog import Catalog, default_catalog
from controlroom.errors import WarehouseError
from controlroom.logs import get_logger
from controlroom.schema import ms_to_iso, now_ms
from controlroom.security import TokenBucket, load_agencies
from controlroom.settings import Settings
from controlroom.supervisor import supervisor_health
from controlroom.warehouse import Warehouse, open_warehouse
from sinks.migrate import migrate
from sinks.writer import SinkWriter

log = get_logger("api")


@dataclass
class ApiState:
    settings: Settings
    catalog: Catalog
    warehouse: Warehouse
    sink: SinkWriter | None = None
    sink_task: asyncio.Task[None] | None = None


def _state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


async def _query(state: ApiState, built: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    sql, params = built
    return await run_in_threadpool(state.warehouse.query, sql, params)


def _sink_health(state: ApiState) -> SinkHealth | None:
    if state.sink is None or state.sink_task is None:
        return None
    error = None
    if state.sink_task.done() and not state.sink_task.cancelled() and state.sink_task.exception() is not None:
        error = repr(state.sink_task.exception())
    stats = state.sink.stats
    last = getattr(stats, "last_flush_monotonic", None)
    return SinkHealth(
        running=not state.sink_task.done(),
        rows={str(k): int(v) for k, v in dict(getattr(stats, "rows", {}) or {}).items()},
        last_flush_s=None if last is None else round(time.monotonic() - float(last), 3),
        error=error,
    )


def agencies_text() -> str:
    from importlib import resources

    return (resources.files("controlroom") / "data" / "agencies.yaml").read_text(encoding="utf-8")


def create_app(settings: Settings, catalog: Catalog | None = None) -> FastAPI:
    catalog = catalog or default_catalog()
    agencies = load_agencies(agencies_text(), catalog)
    viewer = [Depends(require("viewer"))]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warehouse = await asyncio.to_thread(open_warehouse, settings)
        stop = asyncio.Event()
        state = ApiState(settings, catalog, warehouse)
        try:
            applied = await asyncio.to_thread(migrate, warehouse, catalog)
            log.info("warehouse ready", database=warehouse.database, migrations_applied=applied,
                     embedded_sink=settings.sink_in_api)
            if settings.sink_in_api:
                state.sink = SinkWriter(settings, catalog, warehouse)
                state.sink_task = asyncio.create_task(state.sink.run(stop), name="sink")
            app.state.api = state
            app.state.security = Security(KeyStore(warehouse), AuditLog(warehouse), agencies,
                                          TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst))
            app.state.analyst = await asyncio.to_thread(AnalystQueries, settings)
            app.state.producer = None  # started on the first ingest: reads need no broker
            app.state.alert_fanout = alerts_stream.AlertFanout(settings)
            app.state.producer_lock = asyncio.Lock()
            yield
        finally:
            stop.set()
            if getattr(app.state, "alert_fanout", None) is not None:
                await app.state.alert_fanout.close()
            if getattr(app.state, "wall_hub", None) is not None:
                await app.state.wall_hub.close()
            if getattr(app.state, "overview_cache", None) is not None:
                await app.state.overview_cache.close()
            if getattr(app.state, "producer", None) is not None:
                await app.state.producer.stop()
            if getattr(app.state, "analyst", None) is not None:
                await asyncio.to_thread(app.state.analyst.close)
            if state.sink_task is not None:
                try:
                    await state.sink_task
                except Exception as exc:  # it already failed while serving; report, then still close
                    log.error("sink task failed", error=repr(exc))
            await asyncio.to_thread(warehouse.close)

    app = FastAPI(
        title="Control Room API",
        description="Live figures and history of the 25 feeds of the national operations center.",
        version="0.1.0",
        lifespan=lifespan,
    )

    app.add_middleware(HardeningMiddleware, max_body_bytes=settings.ingest_max_bytes)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # CORS stays off unless configured
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    for router in (ingest.router, admin.router, query_route.router, alerts_stream.router, alerts.router,
                   wall_stream.router):
        app.include_router(router)

    @app.exception_handler(ParamError)
    async def bad_param(_: Request, exc: ParamError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": exc.detail()})

    @app.exception_handler(WarehouseError)
    async def warehouse_down(_: Request, exc: WarehouseError) -> JSONResponse:
        log.error("warehouse query failed", error=str(exc))
        return JSONResponse(status_code=503, content={"detail": "warehouse unavailable"})

    @app.get("/healthz", response_model=Health, responses={503: {"model": Health}})
    async def healthz(request: Request) -> Any:
        state = _state(request)
        try:
            await _query(state, ping_sql())
            wh: Literal["ok", "error"] = "ok"
        except Exception as exc:  # any failure means "not ok"; the reason goes to the log, not the wire
            log.warning("health check: warehouse failed", error=str(exc))
            wh = "error"
        sink = _sink_health(state)
        ok = wh == "ok" and (sink is None or sink.running)
        body = Health(status="ok" if ok else "degraded", warehouse=wh, sink=sink).model_dump()
        supervisor = supervisor_health(state.settings.data_dir)  # under `controlroom up`: restarts per child
        if supervisor is not None:
            body["supervisor"] = supervisor
        return JSONResponse(status_code=200 if ok else 503, content=body)

    @app.get("/feeds", response_model=FeedsOut, dependencies=viewer)
    async def feeds(request: Request) -> Any:
        cat = _state(request).catalog
        counts: dict[str, int] = {}
        for f, _p, _d in cat.iter_series():
            counts[f.id] = counts.get(f.id, 0) + 1
        return {
            "categories": [{"id": c.id, "name_vi": c.name_vi, "name_en": c.name_en} for c in cat.categories.values()],
            "feeds": [{
                "id": f.id, "category": f.category, "category_name_vi": cat.categories[f.category].name_vi,
                "category_name_en": cat.categories[f.category].name_en, "name_vi": f.name_vi, "name_en": f.name_en,
                "source": f.source, "unit": f.unit, "kind": f.kind, "scope": f.scope,
                "dims": {k: list(v) for k, v in f.dims.items()}, "cadence_s": f.cadence_s,
                "valid_min": f.valid_min, "valid_max": f.valid_max, "topic": f.topic, "series": counts.get(f.id, 0),
            } for f in cat.feeds.values()],
        }

    @app.get("/provinces", response_model=list[ProvinceOut], dependencies=viewer)
    async def provinces(request: Request) -> Any:
        cat = _state(request).catalog
        return [{"code": p.code, "name_vi": p.name_vi, "name_en": p.name_en, "kind": p.kind, "lat": p.lat,
                 "lon": p.lon, "legacy_codes": list(p.legacy_codes)} for p in cat.provinces.values()]

    @app.get("/series", response_model=SeriesOut, dependencies=viewer)
    async def series(
        request: Request,
        feed: Annotated[str, Query(description="feed id, e.g. water_level")],
        province: Annotated[str | None, Query(description="current or legacy code; omitted = all")] = None,
        from_: Annotated[str | None, Query(alias="from", description="ISO 8601 with zone, or epoch ms")] = None,
        to: Annotated[str | None, Query(description="ISO 8601 with zone, or epoch ms; default now")] = None,
        step: Annotated[int, Query(ge=MIN_STEP_S, le=MAX_STEP_S, description="bucket width in seconds")] = 60,
        dims: Annotated[list[str] | None, Query(description="repeatable key:value, e.g. station:s1")] = None,
        source: Annotated[Literal["raw", "agg"], Query(description="raw readings, or closed 1-minute windows")]
        = "raw",
    ) -> Any:
        state = _state(request)
        q = build_series_query(state.catalog, feed=feed, province=province, from_=from_, to=to, step=step,
                               dims=dims or [], source=source, now_ms=now_ms())
        rows = await _query(state, series_sql(state.warehouse.database, q))
        f = state.catalog.feeds[q.feed]
        points = []
        for r in rows:
            n, total = int(r["n"]), float(r["total"])
            avg = total / n
            points.append({"t": ms_to_iso(int(r["t"])), "count": n, "sum": total, "min": float(r["lo"]),
                           "max": float(r["hi"]), "avg": avg, "last": float(r["last_value"]),
                           "value": total if f.kind == "counter" else avg})
        return {"feed": f.id, "province": q.province, "unit": f.unit, "kind": f.kind, "source": q.source,
                "step": q.step_s, "from": ms_to_iso(q.from_ms), "to": ms_to_iso(q.to_ms),
                "dims": {k: list(v) for k, v in q.dims.items()}, "points": points}

    @app.get("/overview", response_model=Overview, dependencies=viewer)
    async def overview(request: Request) -> Any:
        snap = await overview_cache(request).get()
        return Response(snap.body, media_type="application/json", headers={"Age": str(int(snap.age_s()))})

    return app

