"""The indicator catalogue and its period arithmetic (pure)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest
import yaml

from controlroom.catalog import default_catalog
from controlroom.errors import CatalogError
from controlroom.indicators import (
    MonthFigures,
    default_indicators,
    is_subset,
    parse_indicators,
    parse_period,
    period_of,
    period_values,
    periods_between,
    plan_vs_actual,
    ratio_value,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_the_catalogue_covers_every_category_with_100_or_more_indicators() -> None:
    inds = default_indicators()
    catalog = default_catalog()
    assert len(inds) >= 100
    assert {i.category for i in inds.values()} == set(catalog.categories)
    for source in ("feed", "ratio", "report"):
        assert any(i.source == source for i in inds.values()), source
    derived = {i.feed for i in inds.values() if i.feed}
    assert len(derived) >= 20  # most live feeds feed at least one indicator
    assert all(i.periodicity in ("month", "quarter", "year") and i.owner for i in inds.values())


DOC = {"indicators": [
    {"id": "regs_m", "category": "socio_economic", "name_vi": "a", "name_en": "a", "unit": "x", "periodicity": "month",
     "aggregation": "sum", "owner": "mof", "levels": ["national", "provincial"],
     "derive": {"feed": "business_registrations"}},
    {"id": "services_m", "category": "socio_economic", "name_vi": "b", "name_en": "b", "unit": "x",
     "periodicity": "month", "aggregation": "sum", "owner": "mof", "levels": ["national", "provincial"],
     "derive": {"feed": "business_registrations", "dims": {"sector": "services"}}},
    {"id": "share_m", "category": "socio_economic", "name_vi": "c", "name_en": "c", "unit": "%",
     "periodicity": "month", "aggregation": "ratio", "owner": "mof", "levels": ["national"],
     "ratio": {"numerator": "services_m", "denominator": "regs_m", "scale": 100}},
]}


@pytest.mark.parametrize(("where", "change", "message"), [
    (0, {"derive": {"feed": "nope"}}, "derive.feed 'nope' is not a feed"),
    (1, {"derive": {"feed": "business_registrations", "dims": {"sector": "mining"}}}, "derive.dims sector='mining'"),
    (0, {"derive": {"feed": "electricity_load"}}, "sum needs a counter feed"),
    (0, {"aggregation": "end_of_period", "derive": {"feed": "fx_usd_vnd"}}, "provincial level needs a provincial"),
    (0, {"aggregation": "end_of_period"}, "end_of_period needs a national feed"),
    (0, {"periodicity": "week"}, "periodicity must be one of"),
    (0, {"category": "sports"}, "unknown category 'sports'"),
    (0, {"report": "BC01"}, "exactly one of derive, ratio, report"),
    (0, {"owner": ""}, "owner is required"),
    (1, {"id": "regs_m"}, "'regs_m' is defined twice"),
    (1, {"periodicity": "quarter"}, "ratio part 'services_m' must have the same periodicity"),
    (2, {"ratio": {"numerator": "share_m", "denominator": "regs_m"}}, "ratio part 'share_m' must be a non-ratio"),
])
def test_a_bad_indicator_is_refused_naming_it_and_the_field(where: int, change: dict, message: str) -> None:
    doc = copy.deepcopy(DOC)
    doc["indicators"][where].update(change)
    with pytest.raises(CatalogError, match=message):
        parse_indicators(doc, default_catalog())


def test_the_shipped_file_is_plain_yaml_parsed_by_the_same_code() -> None:
    assert len(parse_indicators(copy.deepcopy(DOC), default_catalog())) == 3
    from importlib import resources
    text = (resources.files("controlroom") / "data" / "indicators.yaml").read_text(encoding="utf-8")
    assert "&id" not in text and "*id" not in text  # no YAML anchors or aliases to decode by eye
    assert len(yaml.safe_load(text)["indicators"]) == len(default_indicators())


def test_periods_follow_the_vietnamese_calendar() -> None:
    # 2026-11-01 00:00 in Viet Nam is 2026-10-31 17:00 UTC
    assert period_of("month", ms("2026-10-31T16:59:59.999+00:00")).label == "2026-10"
    nov = period_of("month", ms("2026-10-31T17:00:00+00:00"))
    assert (nov.label, nov.start_ms, nov.end_ms) == ("2026-11", ms("2026-11-01T00:00+07:00"),
                                                     ms("2026-12-01T00:00+07:00"))
    q4 = parse_period("quarter", "2026-Q4")
    assert (q4.start_ms, q4.end_ms) == (ms("2026-10-01T00:00+07:00"), ms("2027-01-01T00:00+07:00"))
    assert period_of("quarter", ms("2026-12-31T16:59:00+00:00")) == q4
    assert period_of("year", ms("2026-12-31T17:00:00+00:00")).label == "2027"
    assert [p.label for p in periods_between("month", q4.start_ms, q4.end_ms)] == ["2026-10", "2026-11", "2026-12"]
    assert [p.label for p in periods_between("quarter", ms("2026-02-10T00:00+07:00"), ms("2026-07-01T00:00+07:00"))] \
        == ["2026-Q1", "2026-Q2"]
    for bad in ("2026-13", "26-01", "2026-Q5"):
        with pytest.raises(ValueError, match="is written like"):
            parse_period("quarter" if "Q" in bad else "month", bad)


def test_months_fold_into_periods_and_silence_has_no_value() -> None:
    inds = parse_indicators(copy.deepcopy(DOC), default_catalog())
    q = [parse_period("quarter", "2026-Q1"), parse_period("quarter", "2026-Q2")]
    months = [MonthFigures(202601, 10.0, 4, 3.0, 100), MonthFigures(202603, 5.0, 1, 5.0, 300),
              MonthFigures(202602, 1.0, 5, 9.0, 200)]
    regs = inds["regs_m"]
    assert period_values(regs, q, months) == [16.0, None]  # Q2: nothing reported, not 0
    avg = type(regs)(**{**{f: getattr(regs, f) for f in regs.__dataclass_fields__}, "aggregation": "average"})
    assert period_values(avg, q, months) == [16.0 / 10, None]
    last = type(regs)(**{**{f: getattr(regs, f) for f in regs.__dataclass_fields__}, "aggregation": "end_of_period"})
    assert period_values(last, q, months) == [5.0, None]  # March's last reading is the newest
    assert ratio_value(1.0, 4.0, 100) == 25.0
    assert ratio_value(1.0, 0.0, 100) is None and ratio_value(None, 4.0, 100) is None
    assert ratio_value(None, 4.0, 100, subset=True) == 0.0 and ratio_value(None, None, 100, subset=True) is None
    assert is_subset(inds["services_m"], inds["regs_m"]) and not is_subset(inds["regs_m"], inds["services_m"])


def test_every_derived_indicator_month_is_whole_utc_hours() -> None:
    # the hourly rollup sums a period exactly only if every boundary is a UTC hour
    for label in ("2026-01", "2026-07", "2027-02"):
        p = parse_period("month", label)
        assert p.start_ms % 3_600_000 == 0 and p.end_ms % 3_600_000 == 0
        assert datetime.fromtimestamp(p.start_ms / 1000, tz=UTC).hour == 17


def test_plan_versus_actual_projects_by_run_rate_or_carries_forward() -> None:
    inds = parse_indicators(copy.deepcopy(DOC), default_catalog())
    periods = [parse_period("quarter", f"2026-Q{q}") for q in (1, 2, 3, 4)]
    now = periods[2].start_ms + 1  # during Q3: Q1 and Q2 complete
    got = plan_vs_actual(inds["regs_m"], periods, [10.0, 30.0, 5.0, None], 100.0, now)
    assert (got["actual_to_date"], got["complete_periods"], got["projection"]) == (45.0, 2, 80.0)  # (10+30)/2×4
    assert (got["actual_pct_of_plan"], got["projection_pct_of_plan"]) == (45.0, 80.0)
    share = plan_vs_actual(inds["share_m"], periods, [40.0, 50.0, 70.0, None], 60.0, now)
    assert (share["actual_to_date"], share["projection"]) == (70.0, 50.0)  # latest measured; latest complete
    nothing = plan_vs_actual(inds["regs_m"], periods, [None] * 4, None, now)
    assert nothing["projection"] is None and nothing["actual_pct_of_plan"] is None and nothing["target"] is None
