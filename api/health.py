"""GET /healthz: the warehouse, the embedded sink and (under `controlroom up`) the supervisor."""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.models import Health, SinkHealth
from api.series_sql import ping_sql
from api.state import ApiState, State
from controlroom.logs import get_logger
from controlroom.supervisor import supervisor_health

log = get_logger("api")

router = APIRouter()


def sink_health(state: ApiState) -> SinkHealth | None:
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
        recomputed=int(getattr(stats, "recomputed", 0) or 0),
        waiting_triggers=int(getattr(stats, "waiting_triggers", 0) or 0),
        healed=int(getattr(stats, "healed", 0) or 0),
        unchecked=int(getattr(stats, "unchecked", 0) or 0),
    )


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
async def healthz(state: State) -> Any:
    try:
        await state.query(ping_sql())
        wh: Literal["ok", "error"] = "ok"
    except Exception as exc:  # any failure means "not ok"; the reason goes to the log, not the wire
        log.warning("health check: warehouse failed", error=str(exc))
        wh = "error"
    sink = sink_health(state)
    ok = wh == "ok" and (sink is None or sink.running)
    body = Health(status="ok" if ok else "degraded", warehouse=wh, sink=sink).model_dump()
    supervisor = supervisor_health(state.settings.data_dir)  # under `controlroom up`: restarts per child
    if supervisor is not None:
        body["supervisor"] = supervisor
    return JSONResponse(status_code=200 if ok else 503, content=body)
