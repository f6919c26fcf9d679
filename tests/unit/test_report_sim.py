"""The report simulator's plan (pure): seeded, the right periods, and every planned report valid."""

from __future__ import annotations

from datetime import datetime

from controlroom.catalog import default_catalog
from controlroom.reports import check_fields, check_rules, default_forms, due_periods
from producers.report_sim import plan


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


NOW = ms("2026-12-02T10:00+07:00")


def test_due_and_overdue_periods() -> None:
    forms = default_forms()
    due, overdue = due_periods(forms["BC_KTXH_THANG"], NOW)  # day 20 of the next month
    assert (due.label if due else None, overdue.label) == ("2026-11", "2026-10")
    due, overdue = due_periods(forms["BC_NHIEMVU_THANG"], NOW)  # day 5: November is still due on 2 December
    assert (due.label if due else None, overdue.label) == ("2026-11", "2026-10")
    due, overdue = due_periods(forms["BC_CCHC_QUY"], NOW)  # 5 days after the quarter: Q3's deadline passed
    assert (due, overdue.label) == (None, "2026-Q3")


def test_the_plan_is_seeded_mostly_on_time_and_every_report_is_valid() -> None:
    forms, provinces = default_forms(), sorted(default_catalog().provinces)
    planned = plan(forms, provinces, NOW, seed=42)
    assert planned == plan(forms, provinces, NOW, seed=42) and planned != plan(forms, provinces, NOW, seed=7)
    monthly = [p for p in planned if p.form == "BC_KTXH_THANG"]
    on_time = [p for p in monthly if p.period == "2026-11"]
    late = [p for p in monthly if p.period == "2026-10"]
    assert 22 <= len(on_time) <= 35 and 0 < len(late) <= 10  # ~85 % and ~10 % of 35 units, the rest missing
    for p in planned:
        form = forms[p.form]
        clean, problems = check_fields(form, p.unit, p.values, draft=False)
        assert problems == [] and clean == p.values, (p.form, p.unit, problems)
        assert check_rules(form, p.values, None) == [], (p.form, p.unit)
    ytd = {p.period: p.values["retail_sales_ytd"] for p in monthly if p.unit == "01"}
    if {"2026-10", "2026-11"} <= set(ytd):
        assert ytd["2026-11"] >= ytd["2026-10"]  # cumulative figures never fall
