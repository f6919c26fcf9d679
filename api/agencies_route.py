"""GET /agencies and GET /agencies/{id}: the registry of connected bodies with their feed contracts, today's measures
and quality score, and one body's score history (controlroom/contracts.py, migration 0017)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from api.agencies_sql import contract_day_sql, daily_scores_sql, vn_day
from api.auth import require
from api.models import AgencyDetailOut, AgencyOut
from api.state import ApiState, State
from controlroom.contracts import Contract
from controlroom.registry import Body
from controlroom.schema import now_ms

router = APIRouter(dependencies=[Depends(require("viewer"))])
_MEASURES = ("quality", "completeness", "timeliness", "validity", "volume")


def _contract_out(c: Contract, today: dict[str, Any] | None) -> dict[str, Any]:
    day = None if today is None else {**{k: today[k] for k in _MEASURES},
                                      **{k: int(today[k]) for k in ("readings", "late", "dead", "hours")}}
    return {"feed": c.feed, "series": len(c.series), "provinces": len(c.provinces), "cadence_s": c.cadence_s,
            "readings_per_hour": [c.per_hour_min, c.per_hour_max], "timeliness_pct": c.timeliness_pct, "today": day}


def _body_out(state: ApiState, b: Body, scores: dict[str, dict[str, Any]],
              contract_days: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    mine = [c for c in state.catalog.contracts.values() if c.agency == b.id]
    judged = [contract_days[(b.id, c.feed)] for c in mine if (b.id, c.feed) in contract_days]
    worst = min(judged, key=lambda r: r["quality"])["feed"] if judged else None
    score = scores.get(b.id)
    return {"id": b.id, "type": b.type, "name_vi": b.name_vi, "name_en": b.name_en, "parent": b.parent,
            "province": b.province, "feeds": list(b.feeds), "contact": b.contact,
            "score_today": None if score is None else score["score"], "worst_contract": worst,
            "contracts": [_contract_out(c, contract_days.get((b.id, c.feed))) for c in mine]}


async def _today(state: ApiState, request: Request, agency: str | None) -> tuple[dict[str, Any], dict[Any, Any], str]:
    db = await state.database_for(request)
    day = vn_day(now_ms())
    scores = {r["agency"]: r for r in await state.query(daily_scores_sql(db, day, agency))}
    contracts = {(r["agency"], r["feed"]): r for r in await state.query(contract_day_sql(db, day, agency))}
    return scores, contracts, db


@router.get("/agencies", response_model=list[AgencyOut],
            summary="The connected bodies (controlroom/data/agencies.yaml): who supplies which feed, under which "
                    "contract, and today's quality score")
async def agencies(state: State, request: Request) -> Any:
    scores, contracts, _ = await _today(state, request, None)
    return [_body_out(state, b, scores, contracts) for b in state.catalog.registry.bodies.values()]


@router.get("/agencies/{agency_id}", response_model=AgencyDetailOut,
            summary="One body: its contracts with today's measures, and its daily quality score over the last days")
async def agency(state: State, request: Request, agency_id: str,
                 days: Annotated[int, Query(ge=1, le=400, description="days of score history")] = 30) -> Any:
    body = state.catalog.registry.bodies.get(agency_id)
    if body is None:
        raise HTTPException(404, f"unknown agency {agency_id[:64]!r} (GET /agencies lists them)")
    scores, contracts, db = await _today(state, request, body.id)
    rows = await state.query(daily_scores_sql(db, vn_day(now_ms(), days - 1), body.id))
    history = [{**{k: r[k] for k in ("score", "contract_hours", "completeness", "timeliness", "validity", "volume",
                                     "worst_feed")}, "day": str(r["day"])} for r in rows]  # a date from either client
    return {**_body_out(state, body, scores, contracts), "history": history}
