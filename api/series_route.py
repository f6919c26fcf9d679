"""GET /series: one feed's readings bucketed by step, raw or from the closed 1-minute windows."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from api.auth import require
from api.models import SeriesOut
from api.params import MAX_STEP_S, MIN_STEP_S, build_series_query
from api.series_sql import series_sql
from api.state import State
from controlroom.schema import ms_to_iso, now_ms

router = APIRouter()


@router.get("/series", response_model=SeriesOut, dependencies=[Depends(require("viewer"))])
async def series(
    state: State,
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
    q = build_series_query(state.catalog, feed=feed, province=province, from_=from_, to=to, step=step,
                           dims=dims or [], source=source, now_ms=now_ms())
    rows = await state.query(series_sql(await state.database_for(request), q))
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
