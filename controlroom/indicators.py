"""The indicator catalogue (controlroom/data/indicators.yaml) and the periods indicators are measured over.

Pure: parsing, validation against the feed catalog, period arithmetic in Asia/Ho_Chi_Minh time and the ratio
arithmetic. The SQL that derives an indicator from the aggregates is in api/indicators_sql.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any, Literal

from controlroom.catalog import Catalog, default_catalog, read_yaml
from controlroom.errors import CatalogError

Periodicity = Literal["month", "quarter", "year"]
PERIODICITIES: tuple[Periodicity, ...] = ("month", "quarter", "year")
AGGREGATIONS = ("sum", "average", "end_of_period", "ratio", "as_reported")
LEVELS = ("national", "provincial")
# Period boundaries are Vietnamese calendar boundaries. Viet Nam keeps UTC+7 all year (no daylight saving), and a
# whole-hour offset keeps every period made of whole UTC hours: the hourly rollup (agg_1h) sums exactly.
VN = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")
_LABEL = {"month": re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$"), "quarter": re.compile(r"^(\d{4})-Q([1-4])$"),
          "year": re.compile(r"^(\d{4})$")}
_ID = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


@dataclass(frozen=True, slots=True)
class Indicator:
    id: str
    category: str
    name_vi: str
    name_en: str
    unit: str
    periodicity: Periodicity
    aggregation: str
    owner: str
    levels: tuple[str, ...]
    feed: str | None = None  # derive: the feed and the dimension values it keeps
    dims: dict[str, str] = field(default_factory=dict)
    numerator: str | None = None  # ratio: scale × numerator / denominator
    denominator: str | None = None
    scale: float = 1.0
    report: str | None = None  # submitted in this report form

    @property
    def source(self) -> Literal["feed", "ratio", "report"]:
        return "feed" if self.feed else "ratio" if self.numerator else "report"

    def doc(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "category": self.category, "name_vi": self.name_vi,
                               "name_en": self.name_en, "unit": self.unit, "periodicity": self.periodicity,
                               "aggregation": self.aggregation, "owner": self.owner, "levels": list(self.levels),
                               "source": self.source}
        if self.feed:
            out["derive"] = {"feed": self.feed, "dims": dict(self.dims)}
        elif self.numerator:
            out["ratio"] = {"numerator": self.numerator, "denominator": self.denominator, "scale": self.scale}
        else:
            out["report"] = self.report
        return out


def parse_indicators(doc: Any, catalog: Catalog) -> dict[str, Indicator]:
    """Build and check the catalogue; every problem names the indicator and its field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("indicators"), list):
        raise CatalogError("indicators: a document with a list `indicators` is expected")
    out: dict[str, Indicator] = {}
    for n, raw in enumerate(doc["indicators"]):
        ind = _parse_one(raw, n, catalog)
        if ind.id in out:
            raise CatalogError(f"indicator {ind.id!r} is defined twice")
        out[ind.id] = ind
    for ind in out.values():
        if ind.numerator:
            for part in (ind.numerator, ind.denominator):
                other = out.get(part or "")
                if other is None or other.source == "ratio":
                    raise CatalogError(f"indicator {ind.id}: ratio part {part!r} must be a non-ratio indicator")
                if other.periodicity != ind.periodicity or not set(ind.levels) <= set(other.levels):
                    raise CatalogError(f"indicator {ind.id}: ratio part {part!r} must have the same periodicity "
                                       "and cover its levels")
    return out


def _parse_one(raw: Any, n: int, catalog: Catalog) -> Indicator:
    where = f"indicator #{n + 1}"
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: a mapping is expected")
    ind_id = str(raw.get("id", ""))
    if not _ID.match(ind_id):
        raise CatalogError(f"{where}: id must be lower-case letters, digits and '_', got {ind_id!r}")
    where = f"indicator {ind_id}"
    for key in ("name_vi", "name_en", "unit", "owner"):
        if not str(raw.get(key) or "").strip():
            raise CatalogError(f"{where}: {key} is required")
    category, periodicity, aggregation = raw.get("category"), raw.get("periodicity"), raw.get("aggregation")
    if category not in catalog.categories:
        raise CatalogError(f"{where}: unknown category {category!r}")
    if periodicity not in PERIODICITIES:
        raise CatalogError(f"{where}: periodicity must be one of {', '.join(PERIODICITIES)}")
    if aggregation not in AGGREGATIONS:
        raise CatalogError(f"{where}: aggregation must be one of {', '.join(AGGREGATIONS)}")
    levels = tuple(raw.get("levels") or ())
    if not levels or any(lv not in LEVELS for lv in levels):
        raise CatalogError(f"{where}: levels must be national and/or provincial")
    sources = [k for k in ("derive", "ratio", "report") if k in raw]
    if len(sources) != 1:
        raise CatalogError(f"{where}: exactly one of derive, ratio, report is expected, got {sources or 'none'}")
    base = {"id": ind_id, "category": str(category), "name_vi": str(raw["name_vi"]), "name_en": str(raw["name_en"]),
            "unit": str(raw["unit"]), "periodicity": periodicity, "aggregation": str(aggregation),
            "owner": str(raw["owner"]), "levels": levels}
    if "derive" in raw:
        return Indicator(**base, **_derive(raw["derive"], str(aggregation), levels, where, catalog))
    if "ratio" in raw:
        r = raw["ratio"] or {}
        if aggregation != "ratio" or not r.get("numerator") or not r.get("denominator"):
            raise CatalogError(f"{where}: a ratio has aggregation ratio, a numerator and a denominator")
        return Indicator(**base, numerator=str(r["numerator"]), denominator=str(r["denominator"]),
                         scale=float(r.get("scale", 1)))
    if aggregation == "ratio" or not str(raw["report"] or "").strip():
        raise CatalogError(f"{where}: a reported figure names its report form and is not a ratio")
    return Indicator(**base, report=str(raw["report"]))


def _derive(d: Any, aggregation: str, levels: tuple[str, ...], where: str, catalog: Catalog) -> dict[str, Any]:
    feed = catalog.feeds.get(str((d or {}).get("feed")))
    if feed is None:
        raise CatalogError(f"{where}: derive.feed {(d or {}).get('feed')!r} is not a feed of the catalog")
    dims = {str(k): str(v) for k, v in ((d or {}).get("dims") or {}).items()}
    for key, value in dims.items():
        if key not in feed.dims or (key not in feed.open_dims and value not in feed.dims[key]):
            raise CatalogError(f"{where}: derive.dims {key}={value!r} is not a dimension value of {feed.id}")
    if aggregation not in ("sum", "average", "end_of_period"):
        raise CatalogError(f"{where}: a derived indicator aggregates by sum, average or end_of_period")
    if aggregation == "sum" and feed.kind != "counter":
        raise CatalogError(f"{where}: sum needs a counter feed; {feed.id} is a {feed.kind}")
    if aggregation == "end_of_period" and (feed.scope != "national" or set(dims) != set(feed.dims)):
        # one series' last reading: a national feed with every dimension pinned (else "last" is ambiguous)
        raise CatalogError(f"{where}: end_of_period needs a national feed with every dimension pinned")
    if "provincial" in levels and feed.scope != "provincial":
        raise CatalogError(f"{where}: provincial level needs a provincial feed; {feed.id} is national")
    return {"feed": feed.id, "dims": dims}


@cache
def default_indicators() -> dict[str, Indicator]:
    return load_indicators(default_catalog())


def load_indicators(catalog: Catalog, path: Path | None = None) -> dict[str, Indicator]:
    return parse_indicators(read_yaml(path, "indicators.yaml", "indicators", CatalogError), catalog)


# --- periods ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, order=True)
class Period:
    """One calendar period in Vietnamese time: start and end (exclusive) as epoch ms, and its label
    (2026-11, 2026-Q4, 2026)."""

    start_ms: int
    end_ms: int
    label: str


def _months(periodicity: Periodicity) -> int:
    return {"month": 1, "quarter": 3, "year": 12}[periodicity]


def _label(periodicity: Periodicity, year: int, month: int) -> str:
    if periodicity == "month":
        return f"{year:04d}-{month:02d}"
    return f"{year:04d}-Q{(month - 1) // 3 + 1}" if periodicity == "quarter" else f"{year:04d}"


def _period_at(periodicity: Periodicity, year: int, month: int) -> Period:
    size = _months(periodicity)
    first = (month - 1) // size * size + 1  # the period's first month
    start = datetime(year, first, 1, tzinfo=VN)
    y2, m2 = divmod(first - 1 + size, 12)
    end = datetime(year + y2, m2 + 1, 1, tzinfo=VN)
    return Period(int(start.timestamp() * 1000), int(end.timestamp() * 1000), _label(periodicity, year, first))


def period_of(periodicity: Periodicity, at_ms: int) -> Period:
    """The period holding the instant at_ms."""
    local = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone(VN)
    return _period_at(periodicity, local.year, local.month)


def parse_period(periodicity: Periodicity, label: str) -> Period:
    m = _LABEL[periodicity].match(label.strip())
    if not m:
        example = {"month": "2026-11", "quarter": "2026-Q4", "year": "2026"}[periodicity]
        raise ValueError(f"a {periodicity} is written like {example}, not {label[:32]!r}")
    year = int(m.group(1))
    month = 1 if periodicity == "year" else int(m.group(2)) if periodicity == "month" else (int(m.group(2)) - 1) * 3 + 1
    return _period_at(periodicity, year, month)


def periods_between(periodicity: Periodicity, from_ms: int, to_ms: int) -> list[Period]:
    """Every period that overlaps [from_ms, to_ms), oldest first."""
    out: list[Period] = []
    p = period_of(periodicity, from_ms)
    while p.start_ms < to_ms:
        out.append(p)
        p = period_of(periodicity, p.end_ms)
    return out


def ratio_value(numerator: float | None, denominator: float | None, scale: float, *,
                subset: bool = False) -> float | None:
    """scale × n / d; no value where the denominator is missing or 0 (never a made-up 0 or 100 %). `subset`: the
    numerator selects part of the denominator's own readings (same feed, more dimensions pinned), so when the
    denominator was measured a numerator with no reading is a measured 0 (none of the dossiers was on time)."""
    if denominator is None or denominator == 0:
        return None
    if numerator is None:
        if not subset:
            return None
        numerator = 0.0
    return scale * numerator / denominator


def is_subset(numerator: Indicator, denominator: Indicator) -> bool:
    """The numerator counts a part of the denominator's readings: the same feed with its dimensions pinned too."""
    return (numerator.feed is not None and numerator.feed == denominator.feed
            and denominator.dims.items() <= numerator.dims.items())


# --- values ------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MonthFigures:
    """What the hourly aggregates hold for one Vietnamese month of a selection (one province, or all)."""

    yyyymm: int
    total: float
    count: int
    last: float
    last_at_ms: int


def period_values(ind: Indicator, periods: list[Period], months: list[MonthFigures]) -> list[float | None]:
    """Each period's value from its months: sum of totals, mean of every reading (total / count) or the last
    reading. A period with no reading has no value (None), never 0: silence is not a measured zero."""
    out: list[float | None] = []
    for p in periods:
        inside = [m for m in months if p.start_ms <= _month_start_ms(m.yyyymm) < p.end_ms]
        n = sum(m.count for m in inside)
        if n == 0:
            out.append(None)
        elif ind.aggregation == "sum":
            out.append(sum(m.total for m in inside))
        elif ind.aggregation == "average":
            out.append(sum(m.total for m in inside) / n)
        else:  # end_of_period
            out.append(max(inside, key=lambda m: m.last_at_ms).last)
    return out


def _month_start_ms(yyyymm: int) -> int:
    return int(datetime(yyyymm // 100, yyyymm % 100, 1, tzinfo=VN).timestamp() * 1000)


# --- plan versus actual ------------------------------------------------------------------------------------

PROJECTION_METHODS = {
    "sum": "run rate: the complete periods' total ÷ their number × the periods in the year",
    "other": "carry forward: the latest complete period's value",
}


# the wall's indicator panel (plan versus actual), one or two per area the center watches month by month
HEADLINE_INDICATORS = ("fdi_registered_m", "public_investment_disbursed_m", "budget_revenue_m", "exports_m",
                       "new_enterprises_m", "full_online_share_m", "dossiers_on_time_share_m")


def year_periods(ind: Indicator, year: int) -> list[Period]:
    start = parse_period("year", f"{year:04d}")
    return periods_between(ind.periodicity, start.start_ms, start.end_ms)


def plan_vs_actual(ind: Indicator, periods: list[Period], values: list[float | None], target: float | None,
                   now_ms: int) -> dict[str, Any]:
    """A year's figures against its target: actual so far, the year-end projection and its method, and both as a
    share of the plan. `periods`/`values` are the year's periods and their values. Pure."""
    complete = [(p, v) for p, v in zip(periods, values, strict=True) if p.end_ms <= now_ms and v is not None]
    measured = [v for p, v in zip(periods, values, strict=True) if p.start_ms <= now_ms and v is not None]
    if ind.aggregation == "sum":
        actual = sum(measured) if measured else None
        projection = (sum(v for _, v in complete) / len(complete) * len(periods)) if complete else None
        method = PROJECTION_METHODS["sum"]
    else:
        actual = measured[-1] if measured else None
        projection = complete[-1][1] if complete else None
        method = PROJECTION_METHODS["other"]

    def pct(x: float | None) -> float | None:
        return None if x is None or not target else 100.0 * x / target

    return {"target": target, "actual_to_date": actual, "complete_periods": len(complete),
            "periods_in_year": len(periods), "projection": projection, "projection_method": method,
            "actual_pct_of_plan": pct(actual), "projection_pct_of_plan": pct(projection)}
