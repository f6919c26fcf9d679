"""GET /indicators and GET /indicators/{id}: the indicator catalogue, and an indicator's value per period.

Derived indicators are computed in ClickHouse from the hourly aggregates the moment they are asked for, so the
current period is live (marked `complete: false` until it ends); ratios divide two of them. Reported figures come
from the reporting regimes' submissions: until a form is submitted, its periods have no value (null), never 0.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query

from api.auth import require
from api.indicators_sql import indicator_months_sql
from api.params import ParamError
from api.state import State
from controlroom.catalog import NATIONAL
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
    ratio_value,
)
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


@router.get("/indicators/{indicator_id}", summary="An indicator's value per period, nationally or for a province",
            dependencies=[Depends(require("viewer"))])
async def indicator_values(
    state: State,
    indicator_id: str,
    province: Annotated[str | None, Query(description="province code (current or legacy); omitted = national")]
    = None,
    from_: Annotated[str | None, Query(alias="from", description="a period (2026-11, 2026-Q4, 2026) or a time")]
    = None,
    to: Annotated[str | None, Query(description="the last period included, or a time; default now")] = None,
) -> dict[str, Any]:
    indicators = default_indicators()
    ind = indicators.get(indicator_id)
    if ind is None:
        raise HTTPException(404, f"unknown indicator {indicator_id[:64]!r} (GET /indicators lists them)")
    code = _province(state, ind, province)
    periods = _periods(ind, from_, to, now_ms())
    if ind.source == "report":
        values: list[float | None] = [None] * len(periods)
    elif ind.source == "ratio":
        numerator, denominator = indicators[ind.numerator or ""], indicators[ind.denominator or ""]
        num = await _derived(state, numerator, code, periods)
        den = await _derived(state, denominator, code, periods)
        subset = is_subset(numerator, denominator)
        values = [ratio_value(n, d, ind.scale, subset=subset) for n, d in zip(num, den, strict=True)]
    else:
        values = await _derived(state, ind, code, periods)
    now = now_ms()
    return {"indicator": ind.doc(), "province": code, "level": "national" if code == NATIONAL else "provincial",
            "periods": [{"period": p.label, "from": ms_to_iso(p.start_ms), "to": ms_to_iso(p.end_ms), "value": v,
                         "complete": p.end_ms <= now} for p, v in zip(periods, values, strict=True)],
            **({"note": f"submitted in report form {ind.report}; a period without an accepted submission has "
                        "no value"} if ind.report else {})}


async def _derived(state: State, ind: Indicator, code: str, periods: list[Period]) -> list[float | None]:
    if not periods:
        return []
    rows = await state.query(indicator_months_sql(state.warehouse.database, ind, None if code == NATIONAL else code,
                                                  periods[0].start_ms, periods[-1].end_ms))
    months = [MonthFigures(int(r["ym"]), float(r["total"]), int(r["n"]), float(r["last_value"]), int(r["last_at"]))
              for r in rows]
    return period_values(ind, periods, months)


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
