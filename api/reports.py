"""The reporting regimes over HTTP: report forms, submissions with revisions, and compliance (who reported, on time).

POST /reports/{form}/{period} takes an agency key: a province's own key (scoped to that province) submits the
province's report; the form's national submitter submits unit 00. Every submission is a new revision; nothing is
overwritten (GET …?history=1 shows them all).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
import pyarrow as pa
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.alerts import _audit
from api.auth import Principal, require
from api.params import ParamError
from api.reports_sql import latest_revision_sql, next_revision_sql, reviews_sql, submissions_sql
from api.state import ApiState, State
from controlroom.catalog import NATIONAL
from controlroom.indicators import Period
from controlroom.reports import (
    REVIEW_STATE,
    Form,
    Step,
    check_fields,
    check_rules,
    default_forms,
    due_periods,
    previous_period,
    province_centers,
    reporting_agency,
    review_problem,
)
from controlroom.schema import ms_to_iso, now_ms, report_submitted_message

router = APIRouter()
_revision_lock = asyncio.Lock()  # one revision number per submission within this API process
SUBMISSIONS_SCHEMA = pa.schema([
    ("form", pa.string()), ("period", pa.string()), ("unit", pa.string()), ("revision", pa.uint32()),
    ("status", pa.string()), ("values", pa.map_(pa.string(), pa.float64())), ("problems", pa.string()),
    ("agency", pa.string()), ("submitted_by", pa.string()), ("submitted_at", pa.timestamp("ms", tz="UTC")),
    ("on_time", pa.uint8()), ("comment", pa.string())])


class SubmissionIn(BaseModel):
    unit: str | None = Field(None, description="province code, or 00 for the national figures; default: the "
                                               "key's one province")
    values: dict[str, Any] = Field(description="field id → number")
    draft: bool = Field(False, description="save without submitting: fields may be missing, rules may fail")
    comment: str = Field("", max_length=2000)


def _form(code: str) -> Form:
    form = default_forms().get(code)
    if form is None:
        raise HTTPException(404, f"unknown report form {code[:32]!r} (GET /reports/forms lists them)")
    return form


def _period(form: Form, label: str) -> Period:
    try:
        return form.period(label)
    except ValueError as exc:
        raise ParamError("period", str(exc)) from None


def _unit(state: ApiState, form: Form, who: Principal, unit: str | None) -> str:
    """The unit this key may report for: 00 for the form's national submitter; else a province of the key."""
    if unit is None:
        if who.agency == form.national_submitter and not who.provinces:
            return NATIONAL
        if len(who.provinces) != 1:
            raise ParamError("unit", "give the province (or 00) this report is for")
        unit = next(iter(who.provinces))
    code = NATIONAL if unit == NATIONAL else state.catalog.current_province(unit)
    if code is None:
        raise ParamError("unit", f"unknown province code {unit[:16]!r}")
    if code == NATIONAL and who.agency != form.national_submitter:
        raise HTTPException(403, f"the national figures of {form.code} are submitted by {form.national_submitter}")
    if code != NATIONAL and code not in who.provinces:
        raise HTTPException(403, f"this key does not report for province {code}: a province submits with a key "
                                 "scoped to it")
    return code


@router.get("/reports/forms", summary="The report forms: fields, valid ranges, deadline, rules",
            dependencies=[Depends(require("viewer"))])
async def forms() -> dict[str, Any]:
    return {"forms": [f.doc() for f in default_forms().values()]}


@router.post("/reports/{form_code}/{period}", status_code=201,
             summary="Submit (or save as a draft) a report for a period: a new revision, validated field by field")
async def submit(request: Request, state: State, who: Annotated[Principal, Depends(require("agency"))],
                 form_code: str, period: str, body: SubmissionIn) -> dict[str, Any]:
    form = _form(form_code)
    p = _period(form, period)
    now = now_ms()
    if now < p.start_ms:
        raise ParamError("period", f"{p.label} has not started")
    unit = _unit(state, form, who, body.unit)
    values, problems = check_fields(form, unit, body.values, body.draft)
    if problems:  # a wrong value is never stored, not even in a draft
        raise HTTPException(422, [{"loc": ["body", "values", pr.id], **pr.doc()} for pr in problems])
    before = previous_period(form, p)
    previous = await _latest_values(state, form, before.label, unit) if before else None
    broken = check_rules(form, values, previous)
    if broken and not body.draft:
        raise HTTPException(422, [{"loc": ["body", "values", *pr.fields], **pr.doc()} for pr in broken]
                            + [{"msg": "fix the figures, or save it as a draft (draft: true)"}])
    deadline = form.deadline_ms(p)
    status = "draft" if body.draft else "submitted"
    on_time = status == "submitted" and now < deadline
    async with _revision_lock:
        rows = await state.query(next_revision_sql(state.warehouse.database, form.code, p.label, unit))
        revision = int(rows[0]["r"]) if rows and rows[0]["r"] is not None else 1
        table = pa.table({"form": [form.code], "period": [p.label], "unit": [unit], "revision": [revision],
                          "status": [status], "values": [list(values.items())],
                          "problems": [orjson.dumps([b.doc() for b in broken]).decode()], "agency": [who.agency],
                          "submitted_by": [who.name], "submitted_at": [now], "on_time": [int(on_time)],
                          "comment": [body.comment]}, schema=SUBMISSIONS_SCHEMA)
        await run_in_threadpool(state.warehouse.insert_arrow, f"{state.warehouse.database}.report_submissions",
                                table, f"report-{form.code}-{p.label}-{unit}-{revision}-{now}")
    out = {"form": form.code, "period": p.label, "unit": unit, "revision": revision, "status": status,
           "on_time": on_time, "deadline": ms_to_iso(deadline), "submitted_at": ms_to_iso(now),
           "fields": [{"field": k, "status": "ok", "value": v} for k, v in values.items()],
           "rule_problems": [b.doc() for b in broken]}
    await _audit(request, who, f"report.{status}", f"{form.code}/{p.label}/{unit}",
                 after={"revision": revision, "values": values})
    if status == "submitted" and state.report_announcer is not None:  # the deadline alerts of this unit end
        state.report_announcer.announce(report_submitted_message(form.code, p.label, unit, revision, now,
                                                                  who.agency))
    return out


class ReviewIn(BaseModel):
    step: Step = Field(description="approve (the province's center), accept (the national center) or reject")
    comment: str = Field("", max_length=2000, description="required to reject: why, for the submitter")


REVIEWS_SCHEMA = pa.schema([
    ("form", pa.string()), ("period", pa.string()), ("unit", pa.string()), ("revision", pa.uint32()),
    ("step", pa.string()), ("reviewed_by", pa.string()), ("reviewed_at", pa.timestamp("ms", tz="UTC")),
    ("comment", pa.string())])


@router.post("/reports/{form_code}/{period}/{unit}/review",
             summary="Approve (province), accept (nation) or reject the latest submitted revision (operators)")
async def review(request: Request, state: State, who: Annotated[Principal, Depends(require("operator"))],
                 form_code: str, period: str, unit: str, body: ReviewIn) -> dict[str, Any]:
    form = _form(form_code)
    p = _period(form, period)
    code = NATIONAL if unit == NATIONAL else state.catalog.current_province(unit)
    if code is None:
        raise ParamError("unit", f"unknown province code {unit[:16]!r}")
    if body.step == "reject" and not body.comment.strip():
        raise ParamError("comment", "a rejection says why")
    async with _revision_lock:
        latest = await state.query(latest_revision_sql(state.warehouse.database, form.code, p.label, code))
        if not latest:
            raise HTTPException(404, f"no submitted report of {form.code} {p.label} for unit {code}")
        revision = int(latest[0]["revision"])
        states = await review_states(state, form, [p.label])
        current = states.get((code, p.label, revision), "submitted")
        why = review_problem(code, current, body.step, who.provinces)
        if why:
            raise HTTPException(409, f"revision {revision} is {current}: {why}")
        now = now_ms()
        table = pa.table({"form": [form.code], "period": [p.label], "unit": [code], "revision": [revision],
                          "step": [body.step], "reviewed_by": [who.name], "reviewed_at": [now],
                          "comment": [body.comment]}, schema=REVIEWS_SCHEMA)
        await run_in_threadpool(state.warehouse.insert_arrow, f"{state.warehouse.database}.report_reviews", table,
                                f"review-{form.code}-{p.label}-{code}-{revision}-{body.step}-{now}")
    await _audit(request, who, f"report.{body.step}", f"{form.code}/{p.label}/{code}",
                 before={"revision": revision, "state": current}, after={"comment": body.comment})
    return {"form": form.code, "period": p.label, "unit": code, "revision": revision,
            "state": REVIEW_STATE[body.step], "reviewed_by": who.name, "reviewed_at": ms_to_iso(now)}


async def review_states(state: ApiState, form: Form, periods: list[str]) -> dict[tuple[str, str, int], str]:
    """(unit, period, revision) → its review state after its last step (absent: not reviewed yet)."""
    rows = await state.query(reviews_sql(state.warehouse.database, form.code, periods))
    return {(str(r["unit"]), str(r["period"]), int(r["revision"])): REVIEW_STATE[str(r["step"])] for r in rows}


@router.get("/reports/compliance", summary="Who reported: expected, submitted, on time, per form and unit")
async def compliance(state: State, who: Annotated[Principal, Depends(require("viewer"))], form: str | None = None,
                     period: Annotated[str | None, Query(description="default: the latest period whose deadline "
                                                                         "has passed")] = None) -> dict[str, Any]:
    forms = [_form(form)] if form else list(default_forms().values())
    now = now_ms()
    out = []
    for f in forms:
        p = _period(f, period) if period else due_periods(f, now)[1]
        rows = await state.query(submissions_sql(state.warehouse.database, f.code, p.label, None, history=True))
        reviewed = await review_states(state, f, [p.label])
        units = [NATIONAL, *sorted(who.provinces or state.catalog.provinces)]  # a scoped key: its provinces
        centers = province_centers(state.catalog)
        per_unit = []
        for unit in units:
            mine = [r for r in rows if r["unit"] == unit and r["status"] == "submitted"]
            first = min(mine, key=lambda r: int(r["revision"])) if mine else None
            last = max(mine, key=lambda r: int(r["revision"])) if mine else None
            review_state = reviewed.get((unit, p.label, int(last["revision"])), "submitted") if last else None
            in_time = bool(first and first["on_time"])  # judged on the first submission
            per_unit.append({"unit": unit, "agency": reporting_agency(f, unit, centers),
                             "status": "on_time" if in_time else "late" if mine else "missing",
                             "submitted": bool(mine), "on_time": in_time,
                             "state": review_state,
                             "revisions": len([r for r in rows if r["unit"] == unit]),
                             "first_submitted_at": ms_to_iso(int(first["submitted_at_ms"])) if first else None})
        submitted = sum(1 for u in per_unit if u["submitted"])
        on_time = sum(1 for u in per_unit if u["on_time"])
        out.append({"form": f.code, "period": p.label, "deadline": ms_to_iso(f.deadline_ms(p)),
                    "deadline_passed": f.deadline_ms(p) <= now, "expected": len(units), "submitted": submitted,
                    "on_time": on_time, "late": submitted - on_time, "missing": len(units) - submitted,
                    "approved": sum(1 for u in per_unit if u["state"] in ("approved", "accepted")),
                    "accepted": sum(1 for u in per_unit if u["state"] == "accepted"),
                    "units": per_unit})
    return {"forms": out}


@router.get("/reports/{form_code}/{period}", summary="A report's latest revision per unit, or every revision")
async def get_report(state: State, who: Annotated[Principal, Depends(require("viewer"))], form_code: str, period: str,
                     unit: str | None = None, history: bool = False) -> dict[str, Any]:
    form = _form(form_code)
    p = _period(form, period)
    code = None
    if unit is not None:
        code = NATIONAL if unit == NATIONAL else state.catalog.current_province(unit)
        if code is None:
            raise ParamError("unit", f"unknown province code {unit[:16]!r}")
    rows = await state.query(submissions_sql(state.warehouse.database, form.code, p.label, code, history))
    rows = [r for r in rows if not who.provinces or r["unit"] in who.provinces | {NATIONAL}]  # a scoped key's units
    reviewed = await review_states(state, form, [p.label])
    return {"form": form.code, "period": p.label, "deadline": ms_to_iso(form.deadline_ms(p)),
            "submissions": [{**_submission_out(r), "review": reviewed.get((r["unit"], p.label, int(r["revision"])),
                                                                          r["status"])} for r in rows]}


def _submission_out(r: dict[str, Any]) -> dict[str, Any]:
    return {"unit": r["unit"], "revision": int(r["revision"]), "status": r["status"], "values": dict(r["values"]),
            "rule_problems": orjson.loads(r["problems"] or "[]"), "agency": r["agency"],
            "submitted_by": r["submitted_by"], "submitted_at": ms_to_iso(int(r["submitted_at_ms"])),
            "on_time": bool(r["on_time"]), "comment": r["comment"]}


async def _latest_values(state: ApiState, form: Form, period: str, unit: str) -> dict[str, float] | None:
    rows = await state.query(latest_revision_sql(state.warehouse.database, form.code, period, unit))
    return {k: float(v) for k, v in dict(rows[0]["values"]).items()} if rows else None
