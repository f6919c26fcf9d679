"""The reporting regimes (controlroom/data/reports.yaml): report forms, their deadlines, and the checks a
submission must pass, field by field and between fields. Pure; the API (api/reports.py) stores submissions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Literal

from controlroom.catalog import NATIONAL, Catalog, default_catalog, read_yaml
from controlroom.errors import CatalogError
from controlroom.indicators import VN, Indicator, Period, Periodicity, default_indicators, parse_period, period_of

_ID = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")
_TERM = r"(?:[a-z][a-z0-9_]*|-?\d+(?:\.\d+)?)"
_CHECK = re.compile(rf"^\s*({_TERM}(?:\s*[+-]\s*{_TERM})*)\s*(<=|>=|==|<|>)\s*({_TERM}(?:\s*[+-]\s*{_TERM})*)\s*$")
_OPS = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
        "<": lambda a, b: a < b, ">": lambda a, b: a > b}


@dataclass(frozen=True, slots=True)
class FormField:
    id: str
    type: Literal["number", "integer"]
    min: float
    max: float
    levels: tuple[str, ...]  # the units expected to fill it: national ("00") and/or provincial
    indicator: str | None  # the indicator it carries, if any


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    message_en: str
    message_vi: str
    check: str = ""  # "a <= b + c"
    not_below_previous: str = ""  # a cumulative field

    @property
    def fields(self) -> list[str]:
        if self.not_below_previous:
            return [self.not_below_previous]
        return [t for t in re.findall(r"[a-z][a-z0-9_]*", self.check)]


@dataclass(frozen=True, slots=True)
class Form:
    code: str
    name_vi: str
    name_en: str
    periodicity: Periodicity
    deadline: dict[str, int]
    national_submitter: str
    fields: dict[str, FormField]
    rules: tuple[Rule, ...]

    def deadline_ms(self, period: Period) -> int:
        """The end of the deadline day (Vietnamese time): on time is strictly before this instant."""
        end = datetime.fromtimestamp(period.end_ms / 1000, tz=UTC).astimezone(VN)  # 00:00 of the next period
        if "day_of_next_month" in self.deadline:
            day = end.replace(day=self.deadline["day_of_next_month"])
        else:
            day = end + timedelta(days=self.deadline["days_after_end"] - 1)
        return int((day + timedelta(days=1)).timestamp() * 1000)

    def expected_fields(self, unit: str) -> list[FormField]:
        level = "national" if unit == NATIONAL else "provincial"
        return [f for f in self.fields.values() if level in f.levels]

    def doc(self) -> dict[str, Any]:
        return {"code": self.code, "name_vi": self.name_vi, "name_en": self.name_en,
                "periodicity": self.periodicity, "deadline": dict(self.deadline),
                "national_submitter": self.national_submitter,
                "fields": [{"id": f.id, "type": f.type, "valid": [f.min, f.max], "levels": list(f.levels),
                            "indicator": f.indicator} for f in self.fields.values()],
                "rules": [{"id": r.id, "check": r.check or f"{r.not_below_previous} ≥ previous period's",
                           "message_en": r.message_en, "message_vi": r.message_vi} for r in self.rules]}

    def period(self, label: str) -> Period:
        return parse_period(self.periodicity, label)


def parse_forms(doc: Any, indicators: dict[str, Indicator]) -> dict[str, Form]:
    if not isinstance(doc, dict) or not isinstance(doc.get("forms"), list):
        raise CatalogError("reports: a document with a list `forms` is expected")
    forms: dict[str, Form] = {}
    for raw in doc["forms"]:
        form = _parse_form(raw, indicators)
        if form.code in forms:
            raise CatalogError(f"report form {form.code} is defined twice")
        forms[form.code] = form
    for ind in indicators.values():
        if ind.report and (ind.report not in forms or ind.id not in forms[ind.report].fields):
            raise CatalogError(f"indicator {ind.id}: report form {ind.report} does not carry it")
    return forms


def _parse_form(raw: Any, indicators: dict[str, Indicator]) -> Form:
    code = str((raw or {}).get("code", ""))
    if not _CODE.match(code):
        raise CatalogError(f"report form: code must be upper-case letters, digits and '_', got {code!r}")
    where = f"report form {code}"
    periodicity = raw.get("periodicity")
    if periodicity not in ("month", "quarter", "year"):
        raise CatalogError(f"{where}: periodicity must be month, quarter or year")
    deadline = raw.get("deadline") or {}
    if len(deadline) != 1 or not (1 <= int(deadline.get("day_of_next_month", 1)) <= 28) \
            or not (1 <= int(deadline.get("days_after_end", 1)) <= 366) \
            or set(deadline) - {"day_of_next_month", "days_after_end"}:
        raise CatalogError(f"{where}: deadline is {{day_of_next_month: 1..28}} or {{days_after_end: 1..366}}")
    fields: dict[str, FormField] = {}
    for fid, spec in (raw.get("fields") or {}).items():
        fields[str(fid)] = _parse_field(str(fid), spec or {}, indicators, where, periodicity)
    if not fields:
        raise CatalogError(f"{where}: a form carries at least one field")
    rules = tuple(_parse_rule(r, fields, where) for r in raw.get("rules") or [])
    return Form(code, str(raw.get("name_vi", "")), str(raw.get("name_en", "")), periodicity,
                {k: int(v) for k, v in deadline.items()}, str(raw.get("national_submitter", "")), fields, rules)


def _parse_field(fid: str, spec: dict[str, Any], indicators: dict[str, Indicator], where: str,
                 periodicity: str) -> FormField:
    if not _ID.match(fid):
        raise CatalogError(f"{where}: field id {fid!r} must be lower-case letters, digits and '_'")
    kind, valid = spec.get("type"), spec.get("valid")
    if kind not in ("number", "integer") or not isinstance(valid, list) or len(valid) != 2 or valid[0] >= valid[1]:
        raise CatalogError(f"{where}: field {fid}: type number|integer and valid [min, max] with min < max")
    ind = indicators.get(fid)
    if ind is not None and (ind.report is None or ind.periodicity != periodicity):
        raise CatalogError(f"{where}: field {fid} names an indicator that is not reported at this periodicity")
    levels = ind.levels if ind else ("national", "provincial")
    return FormField(fid, kind, float(valid[0]), float(valid[1]), levels, ind.id if ind else None)


def _parse_rule(raw: Any, fields: dict[str, FormField], where: str) -> Rule:
    rule = Rule(str(raw.get("id", "")), str(raw.get("message_en", "")), str(raw.get("message_vi", "")),
                str(raw.get("check", "")), str(raw.get("not_below_previous", "")))
    if not _ID.match(rule.id) or not rule.message_en or not rule.message_vi:
        raise CatalogError(f"{where}: a rule has an id and messages in Vietnamese and English")
    if bool(rule.check) == bool(rule.not_below_previous):
        raise CatalogError(f"{where}: rule {rule.id}: exactly one of check, not_below_previous")
    if rule.check and not _CHECK.match(rule.check):
        raise CatalogError(f"{where}: rule {rule.id}: check must be like 'a <= b + c', got {rule.check!r}")
    unknown = [f for f in rule.fields if f not in fields]
    if unknown:
        raise CatalogError(f"{where}: rule {rule.id} names fields the form does not carry: {', '.join(unknown)}")
    return rule


@cache
def default_forms() -> dict[str, Form]:
    return load_forms(default_catalog())


def load_forms(catalog: Catalog, path: Path | None = None) -> dict[str, Form]:
    del catalog  # the indicators know the catalog; kept for a uniform loader signature
    return parse_forms(read_yaml(path, "reports.yaml", "report forms", CatalogError), default_indicators())


# --- a submission ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Problem:
    """A field or a rule a submission fails: `fields` are the fields involved."""

    kind: Literal["field", "rule"]
    id: str  # the field, or the rule
    fields: tuple[str, ...]
    message: str

    def doc(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "fields": list(self.fields), "message": self.message}


def check_fields(form: Form, unit: str, values: Any, draft: bool) -> tuple[dict[str, float], list[Problem]]:
    """Each value checked against its field: a number, whole for integers, within the valid range; every field
    the unit must fill present (a draft may leave some out). Returns the clean values and the problems."""
    if not isinstance(values, dict):
        return {}, [Problem("field", "values", (), "values must be an object of field → number")]
    expected = {f.id for f in form.expected_fields(unit)}
    problems: list[Problem] = []
    clean: dict[str, float] = {}
    for fid, value in values.items():
        spec = form.fields.get(fid)
        if spec is None or fid not in expected:
            why = "not a field of this form" if spec is None else "not expected from this unit (level)"
            problems.append(Problem("field", fid, (fid,), why))
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(Problem("field", fid, (fid,), "must be a finite number"))
        elif spec.type == "integer" and value != int(value):
            problems.append(Problem("field", fid, (fid,), "must be a whole number"))
        elif not spec.min <= value <= spec.max:
            problems.append(Problem("field", fid, (fid,), f"must be between {spec.min:g} and {spec.max:g}"))
        else:
            clean[fid] = float(value)
    if not draft:
        problems += [Problem("field", fid, (fid,), "required") for fid in sorted(expected - set(values))]
    return clean, problems


def check_rules(form: Form, values: dict[str, float], previous: dict[str, float] | None) -> list[Problem]:
    """The form's rules on the clean values. A rule whose fields are not all given is not judged (a draft)."""
    problems = []
    for rule in form.rules:
        if any(f not in values for f in rule.fields):
            continue
        if rule.not_below_previous:
            before = (previous or {}).get(rule.not_below_previous)
            if before is not None and values[rule.not_below_previous] < before:
                problems.append(Problem("rule", rule.id, tuple(rule.fields),
                                        f"{rule.message_en} (previous period: {before:g})"))
            continue
        m = _CHECK.match(rule.check)
        assert m is not None  # noqa: S101  (checked at load)
        left, op, right = _sum(m.group(1), values), m.group(2), _sum(m.group(3), values)
        if not _OPS[op](left, right):
            problems.append(Problem("rule", rule.id, tuple(rule.fields), rule.message_en))
    return problems


def _sum(expr: str, values: dict[str, float]) -> float:
    total, sign = 0.0, 1.0
    for term in re.findall(r"[+-]|[a-z][a-z0-9_]*|\d+(?:\.\d+)?", expr):
        if term in ("+", "-"):
            sign = 1.0 if term == "+" else -1.0
        else:
            total += sign * (values[term] if term[0].isalpha() else float(term))
    return total


def province_centers(catalog: Catalog) -> dict[str, str]:
    """province code → its center in the registry (ioc_<code>): who submits the province's reports."""
    return {b.province: b.id for b in catalog.registry.bodies.values() if b.province}


def reporting_agency(form: Form, unit: str, centers: dict[str, str]) -> str:
    """Who submits a unit's report: the form's national submitter for 00, else the province's center."""
    return form.national_submitter if unit == NATIONAL else centers.get(unit, "")


def due_periods(form: Form, now_ms: int) -> tuple[Period | None, Period]:
    """(the ended period whose deadline is still ahead, or None; the latest period whose deadline has passed)."""
    p = period_of(form.periodicity, now_ms)
    while form.deadline_ms(p) > now_ms:
        p = period_of(form.periodicity, p.start_ms - 1)
    after = period_of(form.periodicity, p.end_ms)
    due = after if after.end_ms <= now_ms < form.deadline_ms(after) else None
    return due, p


def previous_period(form: Form, period: Period) -> Period | None:
    """The period before, within the same year (cumulative figures restart in January)."""
    before = period_of(form.periodicity, period.start_ms - 1)
    same_year = before.label[:4] == period.label[:4]
    return before if same_year else None


# --- review along the hierarchy ----------------------------------------------------------------------------

Step = Literal["approve", "accept", "reject"]
REVIEW_STATE = {"approve": "approved", "accept": "accepted", "reject": "rejected"}


def review_problem(unit: str, state: str, step: Step, reviewer_provinces: frozenset[str]) -> str | None:
    """Why `step` is not allowed on a revision in `state` (submitted | approved | accepted | rejected | draft) by a
    reviewer whose key covers `reviewer_provinces` (empty: national); None when it is allowed.
    A province's report: submitted → approved by that province's center (a key scoped to it) → accepted by the
    national center (an unscoped key). The national figures (00): submitted → accepted. Either reviewer may
    reject what is waiting for them."""
    national_reviewer = not reviewer_provinces
    if state in ("draft", "accepted", "rejected"):
        return f"a {state} revision cannot be reviewed"
    if unit != NATIONAL and state == "submitted":
        if national_reviewer or unit not in reviewer_provinces:
            return f"waiting for province {unit}'s approval (a key scoped to {unit})"
        return None if step in ("approve", "reject") else "the province approves first"
    if not national_reviewer:
        return "waiting for the national center's acceptance (an unscoped key)"
    return None if step in ("accept", "reject") else "already approved: accept or reject"
