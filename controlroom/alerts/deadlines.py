"""Report deadlines as alert conditions (issue 16): which reporting units have not submitted a report form
(controlroom/data/reports.yaml) for a period whose deadline is near or has passed. Pure code: the rule engine
(controlroom/alerts/evaluate.py) calls it from its clock and when a submission is announced on topic
`reports.submitted`; no Kafka, no ClickHouse.

A `report_deadline` rule has one stage (params.stage):
- reminder: from `days_before` days before the deadline until the deadline, while the unit has not submitted;
- overdue: from the deadline (+ `grace_s`) while the unit has not submitted, for `judge_for_days` after it (an
  older period is no longer judged: its alert resolves and says so, so state and alerts stay bounded).
A submission counts as soon as it is submitted (not a draft), whatever its review, as in GET /reports/compliance.
One alert per (rule, form, unit, period): feed = the form's code, province = the unit (00: the national figures),
dims {period: label}. The units are those /reports/compliance expects: 00 and every province.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controlroom.indicators import VN, Period, period_of
from controlroom.reports import Form
from controlroom.schema import ms_to_iso

DAY_MS = 86_400_000
KEEP_MS = 400 * DAY_MS  # submissions older than this (by deadline) are forgotten: no rule judges them any more
MAX_PERIODS_BACK = 500  # a bound on the walk back through periods (a daily form judged for a year: 365)


@dataclass(frozen=True, slots=True)
class Due:
    """One unit's standing on one form and period: `missing` when it has not submitted (the rule's condition)."""

    form: Form
    period: Period
    deadline_ms: int
    unit: str
    missing: bool


class SubmissionLedger:
    """The reports known to be submitted: "form|period|unit" → when first announced as submitted (epoch ms).
    Plain JSON for the alerter's snapshot."""

    def __init__(self) -> None:
        self.first: dict[str, int] = {}

    @staticmethod
    def key(form: str, period: str, unit: str) -> str:
        return f"{form}|{period}|{unit}"

    def record(self, form: str, period: str, unit: str, at_ms: int) -> bool:
        """Note a submission; True when it is the report's first known one."""
        k = self.key(form, period, unit)
        known = self.first.get(k)
        if known is not None and known <= at_ms:
            return False
        self.first[k] = at_ms
        return known is None

    def submitted_at(self, form: str, period: str, unit: str) -> int | None:
        return self.first.get(self.key(form, period, unit))

    def prune(self, forms: Mapping[str, Form], now_ms: int) -> int:
        """Forget reports whose deadline is more than KEEP_MS ago, or of forms no longer defined; how many."""
        gone = []
        for k in self.first:
            code, label, _ = k.split("|", 2)
            form = forms.get(code)
            try:
                old = form is None or form.deadline_ms(form.period(label)) < now_ms - KEEP_MS
            except ValueError:  # a label that is not a period of the form (the form's periodicity changed)
                old = True
            if old:
                gone.append(k)
        for k in gone:
            del self.first[k]
        return len(gone)

    def snapshot(self) -> dict[str, int]:
        return dict(self.first)

    def restore(self, doc: Mapping[str, Any]) -> None:
        self.first = {str(k): int(v) for k, v in doc.items()}


def window_ms(params: Mapping[str, Any]) -> tuple[int, int]:
    """(from, to) offsets from the deadline within which a rule judges a period: [deadline + from, deadline + to)."""
    if params["stage"] == "reminder":
        return -int(params["days_before"] * DAY_MS), 0
    return int(params["grace_s"] * 1000), int(params["judge_for_days"] * DAY_MS)


def judged_periods(form: Form, params: Mapping[str, Any], now_ms: int) -> Iterator[tuple[Period, int]]:
    """The periods of `form` a rule judges at `now_ms`, with their deadlines: those whose deadline window holds now.
    Deadlines grow with the period, so the walk back from the period after now's stops at the first too old."""
    lo, hi = window_ms(params)
    p = period_of(form.periodicity, now_ms - lo)  # the latest period whose deadline may be `-lo` ahead
    for _ in range(MAX_PERIODS_BACK):
        deadline = form.deadline_ms(p)
        if deadline + hi <= now_ms:
            return
        if deadline + lo <= now_ms:
            yield p, deadline
        p = period_of(form.periodicity, p.start_ms - 1)


def judged(params: Mapping[str, Any], forms: Mapping[str, Form], units: list[str], ledger: SubmissionLedger,
           now_ms: int) -> Iterator[Due]:
    """Every (form, period, unit) the rule judges now (`forms`: those it covers; `units`: those it covers)."""
    for form in forms.values():
        for period, deadline in judged_periods(form, params, now_ms):
            for unit in units:
                yield Due(form, period, deadline, unit, ledger.submitted_at(form.code, period.label, unit) is None)


def describe(params: Mapping[str, Any], due: Due, now_ms: int, agency: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(evidence, summary context) of a verdict; `agency`: the body that submits the unit's reports."""
    overdue = params["stage"] == "overdue"
    days = (now_ms - due.deadline_ms if overdue else due.deadline_ms - now_ms) / DAY_MS
    deadline = ms_to_iso(due.deadline_ms)
    last_day = datetime.fromtimestamp((due.deadline_ms - 1) / 1000, tz=UTC).astimezone(VN).date().isoformat()
    evidence = {
        "method": ("not submitted by the deadline" if overdue else
                   f"not submitted {params['days_before']:g} days or less before the deadline"),
        "stage": params["stage"], "form": due.form.code, "form_en": due.form.name_en, "period": due.period.label,
        "unit": due.unit, "agency": agency, "deadline_ms": due.deadline_ms, "deadline": deadline, "last_day": last_day,
        "days_late" if overdue else "days_left": round(days, 2)}
    context = {"form": due.form.code, "form_vi": due.form.name_vi, "form_en": due.form.name_en,
               "feed_vi": due.form.name_vi, "feed_en": due.form.name_en, "period": due.period.label,
               "deadline": last_day, "agency": agency, "days_late": days if overdue else 0.0,
               "days_left": 0.0 if overdue else days, "value": days}
    return evidence, context


def out_of_window_evidence(params: Mapping[str, Any], submitted: bool) -> dict[str, Any]:
    """Why an alert of this rule ends without the unit submitting in the window."""
    if submitted:
        return {"reason": "submitted"}
    if params["stage"] == "reminder":
        return {"reason": "the deadline passed (an overdue rule judges it from now)"}
    return {"reason": f"deadline more than {params['judge_for_days']:g} days ago: no longer judged"}
