"""The Control Room HTTP API (FastAPI).

In embedded mode (chDB) this process owns the warehouse path, so it also runs the sink: the
lifespan starts SinkWriter as a background task and the endpoints read through the same warehouse.
Warehouse calls block, so they run in worker threads; the event loop stays free for the sink.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api import (
    admin,
    agencies_route,
    alerts,
    alerts_stream,
    cap,
    docs,
    health,
    incidents,
    indicators,
    ingest,
    metrics_route,
    overview_route,
    query_route,
    reference,
    reports,
    series_route,
    wall_stream,
)
from api.auth import HardeningMiddleware, Security
from api.keystore import AuditLog, KeyStore
from api.memprobe import start_probe
from api.params import ParamError
from api.readonly_sql import AnalystQueries
from api.report_events import ReportAnnouncer
from api.scope import Scopes
from api.state import ApiState
from controlroom.catalog import Catalog, default_catalog
from controlroom.errors import WarehouseError
from controlroom.logs import get_logger
from controlroom.native_memory import trim_periodically
from controlroom.security import Agency, TokenBucket, load_agencies
from controlroom.settings import Settings
from controlroom.warehouse import open_warehouse, release_engine_memory
from sinks.migrate import migrate
from sinks.writer import SinkWriter

__all__ = ["ApiState", "agencies_text", "create_app"]

log = get_logger("api")

ROUTERS = (ingest.router, admin.router, query_route.router, alerts_stream.router, alerts.router, cap.router,
           incidents.router, indicators.router, reports.router, wall_stream.router,
           health.router, metrics_route.router, reference.router, agencies_route.router, series_route.router,
           overview_route.router, docs.router)  # /docs and /redoc from files this API serves (no CDN: api/docs.py)


def agencies_text() -> str:
    from importlib import resources

    return (resources.files("controlroom") / "data" / "agencies.yaml").read_text(encoding="utf-8")


async def _start(app: FastAPI, state: ApiState, agencies: dict[str, Agency], stop: asyncio.Event) -> None:
    """Migrates the warehouse, starts the embedded sink if configured, and sets what the routers read."""
    settings, warehouse = state.settings, state.warehouse
    applied = await asyncio.to_thread(migrate, warehouse, state.catalog)
    log.info("warehouse ready", database=warehouse.database, migrations_applied=applied,
             embedded_sink=settings.sink_in_api)
    state.report_announcer = ReportAnnouncer(state)
    # what a crash may have left unannounced, and what a broker that lost its topics no longer holds
    await state.report_announcer.announce_stored()
    if settings.sink_in_api:
        sink = SinkWriter(settings, state.catalog, warehouse)
        state.sink = sink
        state.sink_task = asyncio.create_task(sink.run(stop), name="sink")
    app.state.api = state


async def _close(app: FastAPI, state: ApiState) -> None:
    """Closes what _start (or the first request that needed it) opened; the warehouse last."""
    await state.close()
    if state.sink_task is not None:
        try:
            await state.sink_task
        except Exception as exc:  # it already failed while serving; report, then still close
            log.error("sink task failed", error=repr(exc))
    await asyncio.to_thread(state.warehouse.close)


def _lifespan(settings: Settings, catalog: Catalog,
              agencies: dict[str, Agency]) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warehouse = await asyncio.to_thread(open_warehouse, settings)
        stop = asyncio.Event()
        security = Security(KeyStore(warehouse), AuditLog(warehouse), agencies,
                            TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst))
        state = ApiState(settings, catalog, warehouse, security, await asyncio.to_thread(AnalystQueries, settings),
                         alerts_stream.AlertFanout(settings), Scopes(warehouse))
        probe = None
        trim = asyncio.create_task(trim_periodically(stop, lambda: release_engine_memory(warehouse)),
                                   name="malloc-trim")  # controlroom/native_memory.py
        try:
            await _start(app, state, agencies, stop)
            probe = start_probe(warehouse, stop)  # opt-in: CONTROLROOM_TRACEMALLOC (api/memprobe.py)
            yield
        finally:
            stop.set()
            if probe is not None:
                await probe  # its last lines read the warehouse: before that closes
            await trim
            await _close(app, state)

    return lifespan


async def _bad_param(_: Request, exc: ParamError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": exc.detail()})


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own 422, except that the offending input is echoed JSON-safe: a NaN or Infinity sent in a body
    (Python's json accepts them) would otherwise make the error itself unencodable, a 500."""
    def safe(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if isinstance(value, dict):
            return {k: safe(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [safe(v) for v in value]
        return value

    return JSONResponse(status_code=422, content={"detail": safe(jsonable_encoder(exc.errors()))})


async def _warehouse_down(_: Request, exc: WarehouseError) -> JSONResponse:
    log.error("warehouse query failed", error=str(exc))
    return JSONResponse(status_code=503, content={"detail": "warehouse unavailable"})


def create_app(settings: Settings, catalog: Catalog | None = None) -> FastAPI:
    catalog = catalog or default_catalog()
    agencies = load_agencies(agencies_text(), catalog)
    app = FastAPI(
        title="Control Room API",
        description="Live figures and history of the 25 feeds of the national operations center.",
        version="0.1.0",
        docs_url=None, redoc_url=None,  # FastAPI's own pages load their scripts from a CDN: api/docs.py serves them
        lifespan=_lifespan(settings, catalog, agencies),
    )
    app.add_middleware(HardeningMiddleware, max_body_bytes=settings.ingest_max_bytes)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:  # CORS stays off unless configured
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "X-API-Key"])
    for router in ROUTERS:
        app.include_router(router)
    app.exception_handler(ParamError)(_bad_param)
    app.exception_handler(WarehouseError)(_warehouse_down)
    app.exception_handler(RequestValidationError)(_invalid_request)
    return app
