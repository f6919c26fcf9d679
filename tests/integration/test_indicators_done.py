"""Issue 16's "done when", checked on chDB with the simulator's own readings around now:
- every derived monthly indicator, for the current month and the previous one, has per province (all 34) and
  nationally the value a recomputation from the raw readings gives (SQL over `readings` per Vietnamese month);
- GET /reports/compliance says per reporting agency whether it reported on time, late or not at all.
(A corrected report showing both revisions: tests/integration/test_reports_api.py.)
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from controlroom.catalog import NATIONAL, Catalog
from controlroom.communes import COMMUNE_DIM
from controlroom.indicators import Indicator, default_indicators, is_subset, period_of
from controlroom.reports import default_forms, due_periods
from controlroom.schema import now_ms
from controlroom.warehouse import Warehouse, open_warehouse
from producers.report_sim import figures
from producers.simulator import Simulator
from sinks.backfill import backfill
from sinks.migrate import migrate
from tests.conftest import register_secret
from tests.integration.api_client import api_client
from tests.integration.test_api import insert_readings

pytestmark = pytest.mark.integration

MIN = 60_000
AGGREGATE = {"sum": "sum(value)", "average": "avg(value)", "end_of_period": "argMax(value, (ts, value))"}


Row = tuple[str, str, str, int, float, dict[str, str]]


def simulated(catalog: Catalog, start: int, end: int, seed: int) -> list[Row]:
    """The simulator's readings of every series between start and end, as readings rows (a commune names no series)."""
    rows = []
    for _topic, _key, raw in Simulator(catalog, seed=seed, start_ms=start).between(start, end, step_ms=1000):
        d = orjson.loads(raw)
        dims = {k: v for k, v in d["dims"].items() if k != COMMUNE_DIM}
        rows.append((str(d["event_id"]), str(d["feed"]), str(d["province"]), int(d["ts"]), float(d["value"]), dims))
    return rows


def recomputed(wh: Warehouse, ind: Indicator, months: tuple[int, int]) -> dict[tuple[str, int], float]:
    """(province or 00, Vietnamese yyyymm) → the indicator straight from the raw readings."""
    where = " ".join(f"AND dims['{k}'] = '{v}'" for k, v in ind.dims.items())
    out: dict[tuple[str, int], float] = {}
    for by in ("province", f"'{NATIONAL}'"):
        rows = wh.query(f"SELECT {by} AS p, toYYYYMM(ts, 'Asia/Ho_Chi_Minh') AS ym, {AGGREGATE[ind.aggregation]} AS v "
                        f"FROM {wh.database}.readings FINAL WHERE feed = '{ind.feed}' {where} "
                        f"AND toYYYYMM(ts, 'Asia/Ho_Chi_Minh') IN {months} GROUP BY p, ym")
        out.update({(str(r["p"]), int(r["ym"])): float(r["v"]) for r in rows})
    return out


def test_derived_indicators_this_month_and_last_equal_the_readings_in_every_province(make_settings,  # type: ignore[no-untyped-def]
                                                                                   catalog: Catalog) -> None:
    now = now_ms()
    this = period_of("month", now)
    last = period_of("month", this.start_ms - 1)
    settings = make_settings(embedded_sink=False, rate_limit_per_s=1e6, rate_limit_burst=1e6)  # ~3,000 calls
    wh = open_warehouse(settings)
    try:
        migrate(wh, catalog)
        rows = simulated(catalog, last.start_ms + 9 * 86_400_000, last.start_ms + 9 * 86_400_000 + 2 * MIN, 11)
        rows += simulated(catalog, max(this.start_ms, now - 3 * MIN), now - MIN, 12)
        insert_readings(wh, rows)
        backfill(wh, last.start_ms, now + 3_600_000, 60)  # the aggregates the sink's recompute makes
        months = (int(last.label.replace("-", "")), int(this.label.replace("-", "")))
        indicators = {i.id: i for i in default_indicators().values() if i.periodicity == "month"
                      and i.source != "report"}
        want: dict[str, dict[tuple[str, int], float]] = {}
        for ind in indicators.values():
            for part in [ind] if ind.source == "feed" else [indicators[ind.numerator or ""],
                                                            indicators[ind.denominator or ""]]:
                if part.id not in want:
                    want[part.id] = recomputed(wh, part, months)
    finally:
        wh.close()

    def expected(ind: Indicator, unit: str, ym: int) -> float | None:
        if ind.source == "feed":
            return want[ind.id].get((unit, ym))
        num, den = indicators[ind.numerator or ""], indicators[ind.denominator or ""]
        d, n = want[den.id].get((unit, ym)), want[num.id].get((unit, ym))
        if not d:
            return None
        return ind.scale * (n if n is not None else 0.0 if is_subset(num, den) else float("nan")) / d

    started, checked, measured_now = time.monotonic(), 0, 0
    with api_client(settings) as (client, keys):
        h = keys.header("viewer")
        for ind in indicators.values():
            units = ([NATIONAL] if "national" in ind.levels else []) + (
                sorted(catalog.provinces) if "provincial" in ind.levels else [])
            for unit in units:
                params = {"from": last.label, "to": this.label, **({} if unit == NATIONAL else {"province": unit})}
                r = client.get(f"/indicators/{ind.id}", params=params, headers=h)
                assert r.status_code == 200, r.text
                got = {p["period"]: p["value"] for p in r.json()["periods"]}
                for label, ym in ((last.label, months[0]), (this.label, months[1])):
                    w = expected(ind, unit, ym)
                    assert (got[label] is None) == (w is None or w != w), (ind.id, unit, label, got[label], w)
                    if got[label] is not None:
                        assert got[label] == pytest.approx(w, rel=1e-9), (ind.id, unit, label)
                        measured_now += label == this.label
                    checked += 1
    assert checked >= 2 * 34 * 40 and measured_now >= 34 * 30  # the current month has figures, per province
    print(f"\n{checked} indicator values (this month and last, 34 provinces and national) equal the readings; "
          f"{measured_now} measured this month; {time.monotonic() - started:.1f} s of API calls")


def test_compliance_says_per_agency_on_time_late_or_missing(make_settings) -> None:  # type: ignore[no-untyped-def]
    now = now_ms()
    form = default_forms()["BC_NHIEMVU_THANG"]
    due, overdue = due_periods(form, now)
    on_time_period = due or period_of("month", now)  # begun, deadline ahead: a submission now is on time
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        store = client.app.state.api.security.keys  # type: ignore[attr-defined]

        def submit(agency: str, unit: str, period: Any) -> None:
            provinces = None if unit == NATIONAL else [unit]
            made, _ = store.create(name=f"c-{agency}", role="agency", created_by="test", agency=agency,
                                   provinces=provinces)
            register_secret(made.token)
            r = client.post(f"/reports/{form.code}/{period.label}", headers={"Authorization": f"Bearer {made.token}"},
                            json={"unit": unit, "values": figures(form, unit, period, 3)})
            assert r.status_code == 201, r.text

        submit("ioc_01", "01", overdue)  # after its deadline: late
        submit("government_office", NATIONAL, overdue)
        submit("ioc_79", "79", on_time_period)
        h = keys.header("viewer")
        late = client.get("/reports/compliance", params={"form": form.code}, headers=h).json()["forms"][0]
        assert late["period"] == overdue.label and late["deadline_passed"] is True
        rows = {u["unit"]: (u["agency"], u["status"]) for u in late["units"]}
        assert rows["01"] == ("ioc_01", "late") and rows[NATIONAL] == ("government_office", "late")
        assert rows["79"] == ("ioc_79", "missing") and rows["48"] == ("ioc_48", "missing")
        assert (late["late"], late["on_time"], late["missing"]) == (2, 0, 33)
        soon = client.get("/reports/compliance", params={"form": form.code, "period": on_time_period.label},
                          headers=h).json()["forms"][0]
        assert {u["unit"]: u["status"] for u in soon["units"] if u["status"] != "missing"} == {"79": "on_time"}
        assert {u["agency"] for u in soon["units"]} == {"government_office"} | {f"ioc_{c}" for c in
                                                                                [u["unit"] for u in soon["units"]]
                                                                                if c != NATIONAL}
