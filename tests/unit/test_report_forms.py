"""The report forms (controlroom/data/reports.yaml) and the checks of a submission (pure)."""

from __future__ import annotations

import copy
from datetime import datetime

import pytest

from controlroom.errors import CatalogError
from controlroom.indicators import default_indicators, parse_period
from controlroom.reports import (
    check_fields,
    check_rules,
    default_forms,
    parse_forms,
    previous_period,
    review_problem,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def test_every_reported_indicator_has_a_form_that_carries_it() -> None:
    forms, indicators = default_forms(), default_indicators()
    carried = {f.indicator for form in forms.values() for f in form.fields.values() if f.indicator}
    assert carried == {i.id for i in indicators.values() if i.report}
    assert len(forms) >= 7 and all(form.rules is not None for form in forms.values())


def test_deadlines_are_vietnamese_calendar_days() -> None:
    forms = default_forms()
    monthly, quarterly = forms["BC_KTXH_THANG"], forms["BC_CCHC_QUY"]
    # "day 20 of the following month": on time until the end of 20 December, Vietnamese time
    assert monthly.deadline_ms(parse_period("month", "2026-11")) == ms("2026-12-21T00:00+07:00")
    # "5 days after quarter end": 1–5 January
    assert quarterly.deadline_ms(parse_period("quarter", "2026-Q4")) == ms("2027-01-06T00:00+07:00")
    assert previous_period(monthly, parse_period("month", "2026-03")) == parse_period("month", "2026-02")
    assert previous_period(monthly, parse_period("month", "2026-01")) is None  # cumulative figures restart


def test_each_field_is_checked_and_named() -> None:
    form = default_forms()["BC_NHIEMVU_THANG"]
    good = {"documents_exchanged_m": 10, "e_cabinet_meetings_m": 2, "petitions_received_m": 30,
            "petitions_resolved_m": 25, "petitions_backlog_start": 4}
    assert check_fields(form, "01", good, draft=False) == ({k: float(v) for k, v in good.items()}, [])
    bad = {**good, "documents_exchanged_m": "ten", "e_cabinet_meetings_m": 2.5, "petitions_received_m": -1,
           "nonsense": 1, "petitions_backlog_start": float("nan")}
    del bad["petitions_resolved_m"]
    clean, problems = check_fields(form, "01", bad, draft=False)
    assert clean == {}
    assert {(p.id, p.message) for p in problems} == {
        ("documents_exchanged_m", "must be a finite number"), ("e_cabinet_meetings_m", "must be a whole number"),
        ("petitions_received_m", "must be between 0 and 1e+12"), ("nonsense", "not a field of this form"),
        ("petitions_backlog_start", "must be a finite number"), ("petitions_resolved_m", "required")}
    assert check_fields(form, "01", {"documents_exchanged_m": 3}, draft=True) == ({"documents_exchanged_m": 3.0}, [])
    national_only = default_forms()["BC_KTXH_THANG"]
    _, wrong_level = check_fields(national_only, "01", {"core_inflation_m": 3.1}, draft=True)
    assert [(p.id, p.message) for p in wrong_level] == [("core_inflation_m", "not expected from this unit (level)")]


def test_rules_between_fields_and_against_the_previous_period() -> None:
    form = default_forms()["BC_NHIEMVU_THANG"]
    values = {"petitions_received_m": 30.0, "petitions_resolved_m": 40.0, "petitions_backlog_start": 4.0}
    [broken] = check_rules(form, values, None)
    assert broken.id == "resolved_within_workload"
    assert set(broken.fields) == {"petitions_resolved_m", "petitions_received_m", "petitions_backlog_start"}
    assert check_rules(form, {**values, "petitions_backlog_start": 10.0}, None) == []  # 40 <= 30 + 10
    assert check_rules(form, {"petitions_resolved_m": 40.0}, None) == []  # not all its fields: not judged
    ytd = default_forms()["BC_KTXH_THANG"]
    [fell] = check_rules(ytd, {"retail_sales_ytd": 90.0}, {"retail_sales_ytd": 100.0})
    assert fell.id == "cumulative_never_falls" and "previous period: 100" in fell.message
    assert check_rules(ytd, {"retail_sales_ytd": 120.0}, {"retail_sales_ytd": 100.0}) == []


DOC = {"forms": [{"code": "BC_T", "name_vi": "t", "name_en": "t", "periodicity": "month",
                  "deadline": {"day_of_next_month": 5}, "national_submitter": "x",
                  "fields": {"aa": {"type": "integer", "valid": [0, 10]}, "bb": {"type": "number", "valid": [0, 1]}},
                  "rules": [{"id": "a_b", "check": "aa <= bb", "message_en": "m", "message_vi": "m"}]}]}


@pytest.mark.parametrize(("change", "message"), [
    ({"code": "bad"}, "code must be upper-case"),
    ({"deadline": {"day_of_next_month": 31}}, "deadline is"),
    ({"deadline": {"weekday": 1}}, "deadline is"),
    ({"fields": {"aa": {"type": "text", "valid": [0, 1]}}, "rules": []}, "type number|integer"),
    ({"rules": [{"id": "rr", "check": "aa <= cc", "message_en": "m", "message_vi": "m"}]}, "names fields the form"),
    ({"rules": [{"id": "rr", "check": "aa; drop", "message_en": "m", "message_vi": "m"}]}, "check must be like"),
    ({"rules": [{"id": "rr", "message_en": "m", "message_vi": "m"}]}, "exactly one of check"),
    ({"fields": {"cpi_change_m": {"type": "number", "valid": [0, 1]}}, "rules": []}, "not reported at this"),
])
def test_a_bad_form_is_refused_naming_it(change: dict, message: str) -> None:
    doc = copy.deepcopy(DOC)
    doc["forms"][0].update(change)
    indicators = {k: v for k, v in default_indicators().items() if not v.report}  # no form must carry them
    if "cpi_change_m" in str(change):
        indicators = {"cpi_change_m": default_indicators()["cpi_change_m"]}
        doc["forms"][0]["periodicity"] = "quarter"
    with pytest.raises(CatalogError, match=message):
        parse_forms(doc, indicators)


def test_review_follows_the_hierarchy() -> None:
    national, hanoi, hcmc = frozenset(), frozenset({"01"}), frozenset({"79"})
    assert review_problem("01", "submitted", "approve", hanoi) is None
    assert review_problem("01", "submitted", "reject", hanoi) is None
    assert "waiting for province 01" in (review_problem("01", "submitted", "approve", hcmc) or "")
    assert "waiting for province 01" in (review_problem("01", "submitted", "accept", national) or "")
    assert review_problem("01", "submitted", "accept", hanoi) == "the province approves first"
    assert review_problem("01", "approved", "accept", national) is None
    assert "national center" in (review_problem("01", "approved", "accept", hanoi) or "")
    assert review_problem("00", "submitted", "accept", national) is None
    assert "national center" in (review_problem("00", "submitted", "accept", hanoi) or "")
    for final in ("accepted", "rejected", "draft"):
        assert review_problem("01", final, "reject", national) == f"a {final} revision cannot be reviewed"


def test_owners_and_national_submitters_are_connected_bodies() -> None:
    from controlroom.catalog import default_catalog

    bodies = default_catalog().registry.bodies
    owners = {i.owner for i in default_indicators().values()}
    assert owners - set(bodies) == {"provinces"}  # "provinces": each province answers for its own figure
    assert {f.national_submitter for f in default_forms().values()} <= set(bodies)
    assert {f"ioc_{code}" for code in default_catalog().provinces} <= set(bodies)  # who submits a province's reports
