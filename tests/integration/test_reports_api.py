"""The reporting regimes over HTTP on chDB: submissions validated field by field, rules between fields, drafts,
revisions that keep every earlier figure, who may report for which unit, and compliance."""

from __future__ import annotations

from typing import Any

import pytest

from controlroom.indicators import period_of
from controlroom.reports import default_forms
from controlroom.schema import now_ms
from tests.conftest import register_secret
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

FORM = "BC_NHIEMVU_THANG"  # monthly, due on day 5 of the next month; national figures by government_office
GOOD = {"documents_exchanged_m": 120, "e_cabinet_meetings_m": 3, "petitions_received_m": 30,
        "petitions_resolved_m": 25, "petitions_backlog_start": 4}


def test_submissions_revisions_rules_and_compliance(make_settings) -> None:  # type: ignore[no-untyped-def]
    this_month = period_of("month", now_ms())  # started, due next month: on time whenever the test runs
    long_ago = period_of("month", period_of("month", this_month.start_ms - 1).start_ms - 1)  # due before now
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        store = client.app.state.api.security.keys  # type: ignore[attr-defined]

        def key(agency: str, provinces: list[str] | None = None, role: str = "agency") -> dict[str, str]:
            made, _ = store.create(name=f"reports-{role}-{agency}-{provinces}", role=role, created_by="test",
                                   agency=agency, provinces=provinces)
            register_secret(made.token)
            return {"Authorization": f"Bearer {made.token}"}

        hanoi, hcmc, office = key("ioc_01", ["01"]), key("ioc_79", ["79"]), key("government_office")
        hanoi_center, hcmc_center = key("", ["01"], "operator"), key("", ["79"], "operator")
        national_center = keys.header("operator")  # an unscoped operator key
        url = f"/reports/{FORM}/{this_month.label}"

        def post(headers: dict[str, str], body: dict[str, Any], at: str = url) -> Any:
            return client.post(at, json=body, headers=headers)

        forms = client.get("/reports/forms", headers=keys.header("viewer")).json()["forms"]
        assert {f["code"] for f in forms} == set(default_forms())

        # field by field: each wrong value named, nothing stored
        bad = post(hanoi, {"values": {**GOOD, "e_cabinet_meetings_m": 2.5, "petitions_received_m": "thirty",
                                      "unknown_field": 1}})
        assert bad.status_code == 422
        named = {d["id"]: d["message"] for d in bad.json()["detail"]}
        assert named == {"e_cabinet_meetings_m": "must be a whole number",
                         "petitions_received_m": "must be a finite number", "unknown_field": "not a field of this form"}
        missing = post(hanoi, {"values": {"documents_exchanged_m": 1}})
        assert missing.status_code == 422 and {d["id"] for d in missing.json()["detail"]} == set(GOOD) - {
            "documents_exchanged_m"}
        # a rule between fields: refused as a submission, kept as a draft with the rule named
        over = {**GOOD, "petitions_resolved_m": 50}
        refused = post(hanoi, {"values": over})
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["id"] == "resolved_within_workload"
        assert set(refused.json()["detail"][0]["fields"]) == {"petitions_resolved_m", "petitions_received_m",
                                                              "petitions_backlog_start"}
        draft = post(hanoi, {"values": over, "draft": True})
        assert draft.status_code == 201 and draft.json()["status"] == "draft" and draft.json()["revision"] == 1
        assert draft.json()["rule_problems"][0]["id"] == "resolved_within_workload"

        first = post(hanoi, {"values": GOOD})
        assert first.status_code == 201, first.text
        assert (first.json()["revision"], first.json()["status"], first.json()["on_time"]) == (2, "submitted", True)
        corrected = post(hanoi, {"values": {**GOOD, "petitions_resolved_m": 27}, "comment": "two more counted"})
        assert corrected.json()["revision"] == 3

        latest = client.get(url, params={"unit": "01"}, headers=keys.header("viewer")).json()["submissions"]
        assert [(s["revision"], s["values"]["petitions_resolved_m"]) for s in latest] == [(3, 27.0)]
        history = client.get(url, params={"unit": "01", "history": 1}, headers=keys.header("viewer")).json()
        assert [(s["revision"], s["status"], s["values"]["petitions_resolved_m"]) for s in history["submissions"]] \
            == [(3, "submitted", 27.0), (2, "submitted", 25.0), (1, "draft", 50.0)]  # no figure changed silently

        # who may report for which unit
        assert post(hcmc, {"unit": "01", "values": GOOD}).status_code == 403
        assert post(hanoi, {"unit": "00", "values": {"documents_exchanged_m": 1}}).status_code == 403
        assert client.post(url, json={"values": GOOD}, headers=keys.header("viewer")).status_code == 403
        national = post(office, {"values": GOOD})
        assert national.status_code == 201 and national.json()["unit"] == "00"
        late = post(hcmc, {"values": GOOD}, at=f"/reports/{FORM}/{long_ago.label}")
        assert late.status_code == 201 and late.json()["on_time"] is False
        future = period_of("month", this_month.end_ms)
        assert post(hanoi, {"values": GOOD}, at=f"/reports/{FORM}/{future.label}").status_code == 422
        assert post(hanoi, {"values": GOOD}, at=f"/reports/{FORM}/2026-13").status_code == 422

        def comp(period: str) -> dict[str, Any]:
            body = client.get("/reports/compliance", params={"form": FORM, "period": period},
                              headers=keys.header("viewer")).json()
            return body["forms"][0]

        now = comp(this_month.label)
        assert (now["expected"], now["submitted"], now["on_time"], now["late"], now["missing"]) == (35, 2, 2, 0, 33)
        assert (now["approved"], now["accepted"]) == (0, 0)  # nobody has reviewed yet
        hanoi_row = next(u for u in now["units"] if u["unit"] == "01")
        assert hanoi_row == {**hanoi_row, "submitted": True, "on_time": True, "revisions": 3, "state": "submitted"}
        before = comp(long_ago.label)
        assert (before["submitted"], before["on_time"], before["late"], before["deadline_passed"]) == (1, 0, 1, True)
        # the reported figures feed their indicators: the newest submitted revision, never a draft; the national
        # figure only once accepted
        viewer = keys.header("viewer")

        def indicator(**params: str) -> list[float | None]:
            body = client.get("/indicators/petitions_resolved_m", headers=viewer,
                              params={"from": this_month.label, "to": this_month.label, **params}).json()
            return [p["value"] for p in body["periods"]]

        assert indicator(province="01") == [27.0] and indicator() == [None] and indicator(province="79") == [None]

        # review along the hierarchy: the province's center approves, the national center accepts
        def step(headers: dict[str, str], unit: str, what: str, comment: str = "", period: str = "") -> Any:
            return client.post(f"/reports/{FORM}/{period or this_month.label}/{unit}/review", headers=headers,
                               json={"step": what, "comment": comment})

        assert step(national_center, "01", "accept").status_code == 409  # waiting for Hà Nội's approval
        assert step(hcmc_center, "01", "approve").status_code == 409  # not its province
        assert step(hanoi_center, "01", "approve").json()["state"] == "approved"
        assert step(hanoi_center, "01", "accept").status_code == 409  # the nation accepts
        accepted = step(national_center, "01", "accept").json()
        assert (accepted["state"], accepted["revision"]) == ("accepted", 3)
        assert step(hanoi, "01", "approve").status_code == 403  # an agency key does not review
        assert step(national_center, "00", "reject").status_code == 422  # a rejection says why
        assert step(hanoi_center, "00", "accept").status_code == 409
        assert step(national_center, "00", "accept").json()["state"] == "accepted"
        assert indicator() == [25.0]
        assert step(national_center, "00", "reject", "late data").status_code == 409  # accepted is final
        rejected = step(hcmc_center, "79", "reject", "the backlog is missing", period=long_ago.label)
        assert rejected.json()["state"] == "rejected"
        shown = client.get(url, params={"unit": "01"}, headers=viewer).json()["submissions"]
        assert [(s["revision"], s["review"]) for s in shown] == [(3, "accepted")]
        ranked = client.get("/indicators/petitions_resolved_m/ranking", headers=viewer,
                            params={"year": this_month.label[:4]}).json()["provinces"]
        # Hà Nội 27; Hồ Chí Minh City's report was rejected: no value to rank
        assert [(r["province"], r["actual_to_date"]) for r in ranked[:2]] == [("01", 27.0), (ranked[1]["province"],
                                                                                            None)]

        # a viewer key scoped to Hồ Chí Minh City sees its own unit and the national figures only
        hcmc_viewer = key("", ["79"], "viewer")
        seen = client.get(url, headers=hcmc_viewer).json()["submissions"]
        assert {s["unit"] for s in seen} == {"00"}  # Hà Nội's report is not there for it
        scoped_comp = client.get("/reports/compliance", params={"form": FORM, "period": this_month.label},
                                 headers=hcmc_viewer).json()["forms"][0]
        assert [u["unit"] for u in scoped_comp["units"]] == ["00", "79"] and scoped_comp["expected"] == 2
        assert client.get("/indicators/petitions_resolved_m", params={"province": "01"},
                          headers=hcmc_viewer).status_code == 404
        assert [r["province"] for r in client.get("/indicators/petitions_resolved_m/ranking", headers=hcmc_viewer,
                                                  params={"year": this_month.label[:4]}).json()["provinces"]] == ["79"]

        reviewed = comp(this_month.label)
        assert (reviewed["approved"], reviewed["accepted"]) == (2, 2)
        assert next(u for u in reviewed["units"] if u["unit"] == "01")["state"] == "accepted"
        default = client.get("/reports/compliance", params={"form": FORM}, headers=keys.header("viewer")).json()
        assert default["forms"][0]["deadline_passed"] is True  # the latest period already due


def test_the_report_simulator_submits_through_the_api_once(make_settings) -> None:  # type: ignore[no-untyped-def]
    from controlroom.catalog import default_catalog
    from controlroom.reports import due_periods
    from producers.report_sim import plan, submit_round

    forms, provinces, now = default_forms(), sorted(default_catalog().provinces), now_ms()
    planned = plan(forms, provinces, now, seed=42)
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        first = submit_round(client, keys.admin, forms, provinces, now, 42, "ioc_{code}")
        assert first == {"submitted": len(planned), "present": 0, "refused": 0}
        again = submit_round(client, keys.admin, forms, provinces, now, 42, "ioc_{code}")
        assert again == {"submitted": 0, "present": len(planned), "refused": 0}  # a restart resubmits nothing
        form = forms["BC_KTXH_THANG"]
        due, overdue = due_periods(form, now)
        for period, on_time in ((due, True), (overdue, False)):
            if period is None:
                continue
            body = client.get("/reports/compliance", params={"form": form.code, "period": period.label},
                              headers=keys.header("viewer")).json()["forms"][0]
            units = {p.unit for p in planned if p.form == form.code and p.period == period.label}
            assert {u["unit"] for u in body["units"] if u["submitted"]} == units
            assert body["on_time"] == (len(units) if on_time else 0) and body["missing"] == 35 - len(units)
        made = [k for k in client.get("/admin/keys", headers=keys.header("admin")).json()
                if k["name"].startswith("report-simulator")]
        assert made and all(k["revoked_at"] for k in made)  # the round's keys live only for the round
