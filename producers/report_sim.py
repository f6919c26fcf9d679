"""Simulated report submissions (`controlroom simulate-reports`, run by `make up`): the reporting units send their
periodic reports through the API as agencies would — most on time, some late, some never.

Pure planning (which unit submits which form for which period, with which figures: seeded, repeatable, every figure
inside its field's range and every rule between fields kept) apart from the HTTP calls.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

from controlroom.catalog import NATIONAL
from controlroom.indicators import Period
from controlroom.reports import Form, FormField, due_periods

MAX_WAITS = 20  # rate-limited answers waited out per request
ON_TIME_SHARE = 0.85  # of the units, for the period now due
LATE_SHARE = 0.10  # of the units, for the period whose deadline has passed (submitted now, so late)


@dataclass(frozen=True, slots=True)
class Planned:
    form: str
    period: str
    unit: str
    values: dict[str, float]


def plan(forms: dict[str, Form], provinces: list[str], now_ms: int, seed: int) -> list[Planned]:
    """Every submission to make now: for each form, ~85 % of the units for the period now due (on time) and ~10 %
    for the period already overdue (late); the rest never report. Seeded by form and period: a rerun plans the same."""
    out: list[Planned] = []
    for form in forms.values():
        due, overdue = due_periods(form, now_ms)
        for period, share in ((due, ON_TIME_SHARE), (overdue, LATE_SHARE)):
            if period is None:
                continue
            rng = random.Random(f"{seed}/{form.code}/{period.label}")
            for unit in [NATIONAL, *provinces]:
                if rng.random() < share:
                    out.append(Planned(form.code, period.label, unit, figures(form, unit, period, seed)))
    return out


def figures(form: Form, unit: str, period: Period, seed: int) -> dict[str, float]:
    """Plausible figures for every field the unit must fill, inside each field's range, keeping the form's rules."""
    rng = random.Random(f"{seed}/{form.code}/{period.label}/{unit}")
    values = {f.id: _value(f, rng, period) for f in form.expected_fields(unit)}
    for rule in form.rules:  # make each "left <= right" rule hold: the left side's first field takes the slack
        m = re.match(r"^\s*([a-z][a-z0-9_]*)\s*<=\s*(.+)$", rule.check)
        if m and all(f in values for f in rule.fields):
            right = sum(values[t] for t in re.findall(r"[a-z][a-z0-9_]*", m.group(2)))
            values[m.group(1)] = min(values[m.group(1)], float(int(right)))
    return values


def _value(field: FormField, rng: random.Random, period: Period) -> float:
    if field.id.endswith("_ytd"):  # cumulative since January: grows with the month, never falls
        month = int(period.label[5:7]) if len(period.label) == 7 and period.label[4] == "-" else 12
        return float(month * 1_000 + rng.randint(0, 999))
    if field.min < 0:  # a rate of change, in %
        return round(rng.uniform(-2.0, 9.0), 2)
    if field.max <= 100:  # a share in %
        return round(rng.uniform(max(field.min, 40.0), 100.0), 1)
    top = min(field.max, 10_000.0)
    return float(rng.randint(int(field.min), int(top))) if field.type == "integer" else round(rng.uniform(0, top), 2)


def submission_body(p: Planned) -> dict[str, Any]:
    return {"unit": p.unit, "values": p.values, "comment": "simulated"}


# --- I/O: the API ------------------------------------------------------------------------------------------

def submit_round(client: httpx.Client, admin_key: str, forms: dict[str, Form], provinces: list[str], now_ms: int,
                 seed: int, province_agency: str) -> dict[str, int]:
    """Submit what `plan` says and is not yet there, each with a key of its own unit (made for the round, revoked
    after): a province's report with a key scoped to it, the national figures with the form's national submitter.
    Returns counts: submitted, already there, refused (a refusal is logged by the caller from the count)."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    counts = {"submitted": 0, "present": 0, "refused": 0}
    keys: dict[tuple[str, str], tuple[str, str]] = {}  # (agency, unit) → (key id, token)
    present: dict[tuple[str, str], set[str]] = {}  # (form, period) → units with a revision already
    try:
        for p in plan(forms, provinces, now_ms, seed):
            if (p.form, p.period) not in present:
                seen = _send(client, "GET", f"/reports/{p.form}/{p.period}", headers=admin)
                present[(p.form, p.period)] = {s["unit"] for s in seen.json()["submissions"]}
            if p.unit in present[(p.form, p.period)]:
                counts["present"] += 1
                continue
            agency = forms[p.form].national_submitter if p.unit == NATIONAL else province_agency.format(code=p.unit)
            if (agency, p.unit) not in keys:
                made = _send(client, "POST", "/admin/keys", headers=admin, json={
                    "name": f"report-simulator {agency} {p.unit}", "role": "agency", "agency": agency,
                    "provinces": [] if p.unit == NATIONAL else [p.unit]})
                keys[(agency, p.unit)] = (made.json()["key_id"], made.json()["key"])
            token = keys[(agency, p.unit)][1]
            sent = _send(client, "POST", f"/reports/{p.form}/{p.period}", json=submission_body(p),
                         headers={"Authorization": f"Bearer {token}"}, check=False)
            counts["submitted" if sent.status_code == 201 else "refused"] += 1
    finally:
        for key_id, _token in keys.values():
            _send(client, "DELETE", f"/admin/keys/{key_id}", headers=admin, check=False)
    return counts


def _send(client: httpx.Client, method: str, url: str, *, check: bool = True, **kw: Any) -> httpx.Response:
    """One request, waiting out the API's rate limit (429 with Retry-After) a few times; `check`: raise on an
    error status."""
    for _ in range(MAX_WAITS):
        resp = client.request(method, url, **kw)
        if resp.status_code != 429:
            break
        time.sleep(min(float(resp.headers.get("Retry-After", "1")), 5.0))
    if check:
        resp.raise_for_status()
    return resp
