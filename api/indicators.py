"""GET /indicators and GET /indicators/{id}: the indicator catalogue, and an indicator's value per period.

Derived indicators are computed in ClickHouse from the hourly aggregates the moment they are asked for, so the
current period is live (marked `complete: false` until it ends); ratios divide two of them. Reported figures come
from the reporting regimes' submissions: until a form is submitted, its periods have no value (null), never 0.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field, field_validator
from starlette.concurrency import run_in_threadpool

from api.alerts import _audit
from api.auth import Principal, require
from api.indicators_sql import indicator_months_sql, next_target_version_sql, reported_sql, targets_sql
from api.params import ParamError
from api.reports import review_states
from api.state import ApiState, State
from controlroom.catalog import NATIONAL, default_catalog
from controlroom.errors import ConfigError
from controlroom.indicators import (
    Indicator,
    MonthFigures,
    Period,
    default_indicators,
    is_subset,
    parse_period,
    period_of,
    period_values,
    periods_between,
    plan_vs_actual,
    ratio_value,
    year_periods,
)
from controlroom.reports import default_forms
from controlroom.schema import ms_to_iso, now_ms, parse_instant

router = APIRouter()
DEFAULT_PERIODS = 12  # without from/to: the current period and the 11 before it
MAX_PERIODS = 240  # 20 years of months


@router.get("/indicators", summary="The indicator catalogue: id, names, unit, periodicity, owner, source",
            dependencies=[Depends(require("viewer"))])
async def list_indicators(
    category: Annotated[str | None, Query(description="only this category (feeds' categories)")] = None,
) -> dict[str, Any]:
    docs = [i.doc() for i in default_indicators().values() if category in (None, i.category)]
    return {"count": len(docs), "indicators": docs}


@router.get("/indicators/{indicator_id}", summary="An indicator's value per period, nationally or for a province")
async def indicator_values(
    state: State,
    who: Annotated[Principal, Depends(require("viewer"))],
    indicator_id: str,
    province: Annotated[str | None, Query(description="province code (current or legacy); omitted = national")]
    = None,
    from_: Annotated[str | None, Query(alias="from", description="a period (2026-11, 2026-Q4, 2026) or a time")]
    = None,
    to: Annotated[str | None, Query(description="the last period included, or a time; default now")] = None,
) -> dict[str, Any]:
    ind = _indicator(indicator_id)
    code = _readable(who, ind, _province(state, ind, province))
    periods = _periods(ind, from_, to, now_ms())
    values = await _values(state, ind, code, periods)
    now = now_ms()
    return {"indicator": ind.doc(), "province": code, "level": "national" if code == NATIONAL else "provincial",
            "periods": [{"period": p.label, "from": ms_to_iso(p.start_ms), "to": ms_to_iso(p.end_ms), "value": v,
                         "complete": p.end_ms <= now} for p, v in zip(periods, values, strict=True)],
            **({"note": f"submitted in report form {ind.report}: the newest submitted revision not rejected "
                        "(drafts never count); national figures only once the national center accepted them; a "
                        "period without one has no value"} if ind.report else {})}


def _month(r: dict[str, Any]) -> MonthFigures:
    return MonthFigures(int(r["ym"]), float(r["total"]), int(r["n"]), float(r["last_value"]), int(r["last_at"]))


def _province(state: State, ind: Indicator, province: str | None) -> str:
    if province is None or province == NATIONAL:
        if "national" not in ind.levels:
            raise ParamError("province", f"{ind.id} is measured per province only: give a province code")
        return NATIONAL
    if "provincial" not in ind.levels:
        raise ParamError("province", f"{ind.id} is a national figure only: omit province")
    current = state.catalog.current_province(province)
    if current is None:
        raise ParamError("province", f"unknown province code {province[:16]!r}")
    return current


def _readable(who: Principal, ind: Indicator, code: str) -> str:
    """`code` if this key may read the indicator there. A key scoped to provinces reads its provinces and the
    national figures that are no sum over other provinces (national feeds, the national submitter's report)."""
    if not who.provinces or code in who.provinces:
        return code
    if code == NATIONAL and _national_source(ind):
        return code
    what = "the national total sums every province" if code == NATIONAL else f"province {code}"
    raise HTTPException(404, f"not in this key's provinces: {what}")


def _national_source(ind: Indicator) -> bool:
    if ind.source == "report":
        return True
    if ind.source == "ratio":
        parts = default_indicators()
        return _national_source(parts[ind.numerator or ""]) and _national_source(parts[ind.denominator or ""])
    return default_catalog().feeds[ind.feed or ""].scope == "national"


def _bound(ind: Indicator, text: str, field: str) -> Period:
    """A period label of the indicator's periodicity, or any instant (the period holding it)."""
    try:
        return parse_period(ind.periodicity, text)
    except ValueError as not_a_label:
        try:
            return period_of(ind.periodicity, parse_instant(text, field, ConfigError))
        except ConfigError:
            raise ParamError(field, f"{not_a_label}, nor a time (ISO 8601 or epoch seconds)") from None


def _periods(ind: Indicator, from_: str | None, to: str | None, now: int) -> list[Period]:
    last = _bound(ind, to, "to") if to else period_of(ind.periodicity, now)
    if from_:
        first = _bound(ind, from_, "from")
    else:
        first = last
        for _ in range(DEFAULT_PERIODS - 1):
            first = period_of(ind.periodicity, first.start_ms - 1)
    if first.start_ms > last.start_ms:
        raise ParamError("from", "must not be after 'to'")
    periods = periods_between(ind.periodicity, first.start_ms, last.end_ms)
    if len(periods) > MAX_PERIODS:
        raise ParamError("from", f"at most {MAX_PERIODS} periods at once")
    return periods


# --- targets, plan versus actual, ranking -------------------------------------------------------------------

_target_lock = asyncio.Lock()  # one version number per change within this API process


class TargetIn(BaseModel):
    province: str | None = Field(None, description="province code; omitted = the national target")
    value: float = Field(description="the plan figure for the year, in the indicator's unit")
    note: str = Field("", max_length=500, description="why (e.g. the resolution that set it)")

    @field_validator("value")
    @classmethod
    def finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class TargetLoadItem(TargetIn):
    indicator: str
    year: int = Field(ge=2000, le=2100)


def _target_out(ind: Indicator, year: int, row: dict[str, Any]) -> dict[str, Any]:
    return {"indicator": ind.id, "year": year, "province": row["prov"], "version": int(row["version"]),
            "value": float(row["value"]), "set_by": row["set_by"], "set_at": ms_to_iso(int(row["set_at_ms"])),
            "note": row["note"]}


def _indicator(indicator_id: str) -> Indicator:
    ind = default_indicators().get(indicator_id)
    if ind is None:
        raise HTTPException(404, f"unknown indicator {indicator_id[:64]!r} (GET /indicators lists them)")
    return ind


async def _set_targets(request: Request, state: ApiState, who: Principal,
                       items: Sequence[tuple[Indicator, int, str, TargetIn]]) -> list[dict[str, Any]]:
    out = []
    async with _target_lock:
        for ind, year, code, item in items:
            rows = await state.query(next_target_version_sql(state.warehouse.database, ind.id, year, code))
            version = int(rows[0]["v"]) if rows and rows[0]["v"] is not None else 1
            at = now_ms()
            row = {"indicator": [ind.id], "province": [code], "year": [year], "version": [version],
                   "value": [item.value], "set_by": [who.name], "set_at": [at], "note": [item.note]}
            table = pa.table(row, schema=TARGETS_SCHEMA)
            await run_in_threadpool(state.warehouse.insert_arrow, f"{state.warehouse.database}.indicator_targets",
                                    table, f"target-{ind.id}-{code}-{year}-{version}-{at}")
            out.append({"indicator": ind.id, "year": year, "province": code, "version": version,
                        "value": item.value, "set_by": who.name, "set_at": ms_to_iso(at), "note": item.note})
            await _audit(request, who, "indicator.target", f"{ind.id}/{code}/{year}", after=out[-1])
    return out


TARGETS_SCHEMA = pa.schema([("indicator", pa.string()), ("province", pa.string()), ("year", pa.uint16()),
                            ("version", pa.uint32()), ("value", pa.float64()), ("set_by", pa.string()),
                            ("set_at", pa.timestamp("ms", tz="UTC")), ("note", pa.string())])


@router.put("/indicators/{indicator_id}/targets/{year}", summary="Set a yearly target (a new version; admins)")
async def put_target(request: Request, state: State, who: Annotated[Principal, Depends(require("admin"))],
                     indicator_id: str, year: Annotated[int, Path(ge=2000, le=2100)],
                     body: TargetIn) -> dict[str, Any]:
    ind = _indicator(indicator_id)
    return (await _set_targets(request, state, who, [(ind, year, _province(state, ind, body.province), body)]))[0]


@router.post("/indicators/targets", summary="Load many yearly targets at once, e.g. a plan file (admins)")
async def load_targets(request: Request, state: State, who: Annotated[Principal, Depends(require("admin"))],
                       body: list[TargetLoadItem]) -> dict[str, Any]:
    items = []
    for n, item in enumerate(body):  # all checked before any is stored
        ind = default_indicators().get(item.indicator)
        if ind is None:
            raise ParamError(f"[{n}].indicator", f"unknown indicator {item.indicator[:64]!r}")
        try:
            code = _province(state, ind, item.province)
        except ParamError as exc:
            raise ParamError(f"[{n}].province", exc.msg) from None
        items.append((ind, item.year, code, item))
    stored = await _set_targets(request, state, who, items)
    return {"stored": len(stored), "targets": stored}


@router.get("/indicators/{indicator_id}/targets", summary="An indicator's targets for a year, or every version")
async def get_targets(state: State, who: Annotated[Principal, Depends(require("viewer"))], indicator_id: str,
                      year: Annotated[int, Query(ge=2000, le=2100)], province: str | None = None,
                      history: bool = False) -> dict[str, Any]:
    ind = _indicator(indicator_id)
    code = None if province is None else _province(state, ind, province)
    rows = await state.query(targets_sql(state.warehouse.database, ind.id, year, code, history))
    mine = [r for r in rows if not who.provinces or r["prov"] in who.provinces | {NATIONAL}]
    return {"indicator": ind.id, "year": year, "targets": [_target_out(ind, year, r) for r in mine]}


@router.get("/indicators/{indicator_id}/plan", summary="Plan versus actual for a year, with the year-end projection")
async def plan(state: State, who: Annotated[Principal, Depends(require("viewer"))], indicator_id: str,
               year: Annotated[int, Query(ge=2000, le=2100)], province: str | None = None) -> dict[str, Any]:
    ind = _indicator(indicator_id)
    code = _readable(who, ind, _province(state, ind, province))
    periods = year_periods(ind, year)
    values = await _values(state, ind, code, periods)
    rows = await state.query(targets_sql(state.warehouse.database, ind.id, year, code))
    target = _target_out(ind, year, rows[0]) if rows else None
    return {"indicator": ind.id, "year": year, "province": code,
            "target_version": target["version"] if target else None,
            **plan_vs_actual(ind, periods, values, target["value"] if target else None, now_ms()),
            "periods": [{"period": p.label, "value": v} for p, v in zip(periods, values, strict=True)]}


@router.get("/indicators/{indicator_id}/ranking", summary="Provinces ranked on a year: share of plan, else value")
async def ranking(state: State, who: Annotated[Principal, Depends(require("viewer"))], indicator_id: str,
                  year: Annotated[int, Query(ge=2000, le=2100)]) -> dict[str, Any]:
    ind = _indicator(indicator_id)
    if "provincial" not in ind.levels:
        raise ParamError("indicator", f"{ind.id} is a national figure only: nothing to rank")
    periods = year_periods(ind, year)
    by_province = await values_by_unit(state, ind, None, periods)
    targets = {r["prov"]: float(r["value"])
               for r in await state.query(targets_sql(state.warehouse.database, ind.id, year, None))}
    now = now_ms()
    rows = []
    for code in sorted(who.provinces or state.catalog.provinces):  # a scoped key ranks its own provinces
        figures = plan_vs_actual(ind, periods, by_province.get(code, [None] * len(periods)), targets.get(code), now)
        rows.append({"province": code, "name_vi": state.catalog.provinces[code].name_vi, **figures})
    # with targets: the share of plan reached; without: the figure itself. Provinces with nothing measured last.
    key = "actual_pct_of_plan" if targets else "actual_to_date"
    rows.sort(key=lambda r: (r[key] is None, -(r[key] or 0.0), r["province"]))
    for n, r in enumerate(rows, 1):
        r["rank"] = n if r[key] is not None else None
    return {"indicator": ind.id, "year": year, "ranked_by": key, "provinces": rows}


async def _values(state: State, ind: Indicator, code: str, periods: list[Period]) -> list[float | None]:
    """An indicator's value per period for one province or nationally, whatever its source."""
    return (await values_by_unit(state, ind, code, periods)).get(code, [None] * len(periods))


async def _reported(state: State, ind: Indicator, unit: str | None,
                    periods: list[Period]) -> dict[str, list[float | None]]:
    """unit (or every unit) → its figure per period: the newest submitted revision not rejected; for the national
    figures (00), only an accepted one. A period without such a revision has no value."""
    labels = [p.label for p in periods]
    rows = await state.query(reported_sql(state.warehouse.database, ind, unit, labels))
    reviewed = await review_states(state, default_forms()[ind.report or ""], labels)
    found: dict[str, dict[str, float]] = {}
    for r in rows:  # newest revision first within each unit and period
        u, label = str(r["prov"]), str(r["label"])
        review = reviewed.get((u, label, int(r["revision"])), "submitted")
        counts = review == "accepted" if u == NATIONAL else review != "rejected"
        if counts and label not in found.get(u, {}):
            found.setdefault(u, {})[label] = float(r["v"])
    return {u: [by_label.get(p.label) for p in periods] for u, by_label in found.items()}


async def values_by_unit(state: State, ind: Indicator, unit: str | None,
                          periods: list[Period]) -> dict[str, list[float | None]]:
    """unit → its value per period, for one unit (a province, or 00 nationally) or (unit None) every province."""

    async def derived(part: Indicator) -> dict[str, list[float | None]]:
        if not periods:
            return {}
        sql = indicator_months_sql(state.warehouse.database, part, None if unit in (None, NATIONAL) else unit,
                                   periods[0].start_ms, periods[-1].end_ms, by_province=unit is None)
        months: dict[str, list[MonthFigures]] = {}
        for r in await state.query(sql):
            months.setdefault(str(r["prov"]) if unit is None else unit, []).append(_month(r))
        return {code: period_values(part, periods, ms) for code, ms in months.items()}

    if ind.source == "report":
        return await _reported(state, ind, unit, periods)
    if ind.source == "feed":
        return await derived(ind)
    indicators = default_indicators()
    numerator, denominator = indicators[ind.numerator or ""], indicators[ind.denominator or ""]
    num, den = await derived(numerator), await derived(denominator)
    subset, empty = is_subset(numerator, denominator), [None] * len(periods)
    return {code: [ratio_value(n, d, ind.scale, subset=subset)
                   for n, d in zip(num.get(code, empty), den.get(code, empty), strict=True)] for code in den}
