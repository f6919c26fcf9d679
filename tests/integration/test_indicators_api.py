"""GET /indicators and GET /indicators/{id} on chDB: derived indicators equal a recomputation from the readings.

Readings straddle a Vietnamese month boundary (2026-11-01 00:00 +07:00 = 2026-10-31 17:00 UTC), the aggregates are
computed from them by the backfill (the same recompute the sink runs), and every figure the API gives is checked
against SQL over `readings` grouped by Vietnamese month: a second path to the same number.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from controlroom.catalog import Catalog
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse, open_warehouse
from sinks.backfill import backfill
from sinks.migrate import migrate
from tests.integration.api_client import api_client
from tests.integration.test_api import insert_readings

pytestmark = pytest.mark.integration

H = 3_600_000


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


EDGE = ms("2026-11-01T00:00+07:00")
T0 = ms("2026-10-01T00:00+07:00")


def seed(wh: Warehouse) -> None:
    rows: list[tuple[str, str, str, int, float, dict[str, str]]] = []
    regs = [(-2 * H, "01", 3, "services"), (-60_000, "01", 2, "industry"), (0, "01", 5, "services"),
            (30 * 60_000, "79", 7, "services"), (-5 * H, "79", 1, "agriculture"), (3 * H, "79", 4, "services")]
    for n, (offset, prov, value, sector) in enumerate(regs):
        rows.append((f"b{n}", "business_registrations", prov, EDGE + offset, float(value), {"sector": sector}))
    for n, (offset, prov, value) in enumerate([(-H, "01", 15000), (-H + 60_000, "01", 15500), (H, "01", 16000),
                                               (H, "79", 14000)]):
        rows.append((f"r{n}", "commodity_prices", prov, EDGE + offset, float(value), {"commodity": "rice"}))
    for n, (offset, prov, value, on_time) in enumerate([(-H, "01", 8, "true"), (-H, "01", 2, "false"),
                                                        (2 * H, "01", 9, "true"), (2 * H, "01", 1, "false"),
                                                        (2 * H, "79", 3, "false")]):
        rows.append((f"d{n}", "dvc_dossiers_resolved", prov, EDGE + offset, float(value), {"on_time": on_time}))
    for n, (offset, value) in enumerate([(-3 * H, 25100), (-H, 25200), (H, 25300), (4 * H, 25250)]):
        rows.append((f"fx{n}", "fx_usd_vnd", "00", EDGE + offset, float(value), {}))
    insert_readings(wh, rows)


def seeded(settings: Settings, catalog: Catalog) -> Warehouse:
    """The warehouse migrated, with the readings and the aggregates the sink's recompute makes of them."""
    wh = open_warehouse(settings)
    migrate(wh, catalog)
    seed(wh)
    backfill(wh, T0, EDGE + 31 * 24 * H, 60)
    return wh


def recomputed(wh: Warehouse, feed: str, aggregate: str, where: str = "1") -> dict[tuple[str, int], float]:
    """(province, Vietnamese yyyymm) → the figure straight from the raw readings; province '00' = all together."""
    out: dict[tuple[str, int], float] = {}
    for by in ("province", "'00'"):
        rows = wh.query(f"SELECT {by} AS p, toYYYYMM(ts, 'Asia/Ho_Chi_Minh') AS ym, {aggregate} AS v "
                        f"FROM {wh.database}.readings FINAL WHERE feed = '{feed}' AND {where} GROUP BY p, ym")
        out.update({(str(r["p"]), int(r["ym"])): float(r["v"]) for r in rows})
    return out


def values(body: dict[str, Any]) -> dict[str, float | None]:
    return {p["period"]: p["value"] for p in body["periods"]}


def test_derived_indicators_equal_the_readings_per_vietnamese_month(make_settings, catalog) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(embedded_sink=False)
    wh = seeded(settings, catalog)
    try:
        sums = recomputed(wh, "business_registrations", "sum(value)")
        services = recomputed(wh, "business_registrations", "sum(value)", "dims['sector'] = 'services'")
        rice = recomputed(wh, "commodity_prices", "avg(value)", "dims['commodity'] = 'rice'")
        on_time = recomputed(wh, "dvc_dossiers_resolved", "sum(value)", "dims['on_time'] = 'true'")
        resolved = recomputed(wh, "dvc_dossiers_resolved", "sum(value)")
        fx_last = recomputed(wh, "fx_usd_vnd", "argMax(value, ts)")
    finally:
        wh.close()
    assert sums[("01", 202610)] == 5 and sums[("01", 202611)] == 5 and sums[("00", 202610)] == 6  # the edge splits

    with api_client(settings) as (client, keys):
        h = keys.header("viewer")
        listing = client.get("/indicators", headers=h).json()
        assert listing["count"] >= 100 and len({i["category"] for i in listing["indicators"]}) == 7

        def get(ind: str, **params: str) -> dict[str, Any]:
            r = client.get(f"/indicators/{ind}", params={"from": "2026-10", "to": "2026-11", **params}, headers=h)
            assert r.status_code == 200, r.text
            return r.json()

        for prov in ("00", "01", "79"):
            kw = {} if prov == "00" else {"province": prov}
            assert values(get("new_enterprises_m", **kw)) == {"2026-10": sums.get((prov, 202610)),
                                                            "2026-11": sums.get((prov, 202611))}
            assert values(get("new_enterprises_services_m", **kw)) == {
                "2026-10": services.get((prov, 202610)), "2026-11": services.get((prov, 202611))}
            got = values(get("rice_price_avg_m", **kw))
            for month, label in ((202610, "2026-10"), (202611, "2026-11")):
                want = rice.get((prov, month))
                assert (got[label] is None) == (want is None) and (want is None or got[label] == pytest.approx(want))
            share = values(get("dossiers_on_time_share_m", **kw))
            for month, label in ((202610, "2026-10"), (202611, "2026-11")):
                den = resolved.get((prov, month))
                want = 100 * on_time.get((prov, month), 0.0) / den if den else None
                assert share[label] == (pytest.approx(want) if want is not None else None), (prov, label)
        assert values(get("fx_usd_vnd_end_m")) == {"2026-10": fx_last[("00", 202610)],
                                                   "2026-11": fx_last[("00", 202611)]}
        # Hồ Chí Minh City (79) had no on-time dossier in November: 0 %, a measured figure; October: no dossier,
        # no value
        assert values(get("dossiers_on_time_share_m", province="79")) == {"2026-10": None, "2026-11": 0.0}

        quarter = client.get("/indicators/new_enterprises_q", params={"from": "2026-Q4", "to": "2026-Q4"},
                             headers=h).json()
        assert values(quarter) == {"2026-Q4": sums[("00", 202610)] + sums[("00", 202611)]}
        assert quarter["periods"][0]["from"] == "2026-09-30T17:00:00.000Z" and quarter["level"] == "national"

        # Bình Dương (legacy 74) is part of Hồ Chí Minh City (79) since July 2025
        legacy = client.get("/indicators/new_enterprises_m", params={"province": "74", "from": "2026-11",
                                                                      "to": "2026-11"}, headers=h).json()
        assert legacy["province"] == "79" and values(legacy) == {"2026-11": sums[("79", 202611)]}

        reported = get("cpi_change_m")
        assert values(reported) == {"2026-10": None, "2026-11": None} and "BC_KTXH_THANG" in reported["note"]

        default = client.get("/indicators/new_enterprises_m", headers=h).json()
        assert len(default["periods"]) == 12 and default["periods"][-1]["complete"] is False
        assert client.get("/indicators/nope", headers=h).status_code == 404
        for params, field in (({"from": "2026-13"}, "from"), ({"province": "99"}, "province"),
                              ({"from": "2026-11", "to": "2026-10"}, "from")):
            bad = client.get("/indicators/new_enterprises_m", params=params, headers=h)
            assert bad.status_code == 422 and field in bad.text, bad.text
        national_only = client.get("/indicators/fx_usd_vnd_end_m", params={"province": "01"}, headers=h)
        assert national_only.status_code == 422 and "national figure only" in national_only.text
        assert client.get("/indicators").status_code == 401


def test_targets_are_versioned_and_plan_ranking_and_projection_follow(make_settings, catalog) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(embedded_sink=False)
    seeded(settings, catalog).close()
    with api_client(settings) as (client, keys):
        admin, viewer = keys.header("admin"), keys.header("viewer")
        url = "/indicators/new_enterprises_m/targets/2026"
        assert client.put(url, json={"value": 100}, headers=viewer).status_code == 403
        first = client.put(url, json={"value": 150, "note": "plan of January"}, headers=admin)
        second = client.put(url, json={"value": 200, "note": "revised in June"}, headers=admin)
        assert first.status_code == second.status_code == 200, first.text
        assert (first.json()["version"], second.json()["version"]) == (1, 2)
        loaded = client.post("/indicators/targets", headers=admin, json=[
            {"indicator": "new_enterprises_m", "province": "01", "year": 2026, "value": 100},
            {"indicator": "new_enterprises_m", "province": "74", "year": 2026, "value": 10}])  # legacy → 79
        assert loaded.status_code == 200 and loaded.json()["stored"] == 2, loaded.text
        refused = client.post("/indicators/targets", headers=admin, json=[
            {"indicator": "new_enterprises_m", "province": "01", "year": 2026, "value": 1},
            {"indicator": "new_enterprises_m", "province": "99", "year": 2026, "value": 1}])
        assert refused.status_code == 422 and "[1].province" in refused.text
        nan = client.put(url, content=b'{"value": NaN}', headers={**admin, "Content-Type": "application/json"})
        assert nan.status_code == 422

        history = client.get("/indicators/new_enterprises_m/targets", params={"year": 2026, "history": 1},
                             headers=viewer).json()["targets"]
        national = [t for t in history if t["province"] == "00"]
        assert [(t["version"], t["value"], t["note"]) for t in national] == [(2, 200.0, "revised in June"),
                                                                           (1, 150.0, "plan of January")]
        current = client.get("/indicators/new_enterprises_m/targets", params={"year": 2026},
                             headers=viewer).json()["targets"]
        assert {t["province"]: (t["version"], t["value"]) for t in current} == {
            "00": (2, 200.0), "01": (1, 100.0), "79": (1, 10.0)}  # province 01 kept its first value: not refused

        plan = client.get("/indicators/new_enterprises_m/plan", params={"year": 2026}, headers=viewer).json()
        # readings in October (6) and November (16) 2026, both complete months by now; run rate over them
        assert (plan["target"], plan["target_version"], plan["actual_to_date"]) == (200.0, 2, 22.0)
        assert plan["complete_periods"] == 2 and plan["periods_in_year"] == 12
        assert plan["projection"] == pytest.approx(22 / 2 * 12) and plan["actual_pct_of_plan"] == pytest.approx(11.0)
        assert "run rate" in plan["projection_method"]

        ranking = client.get("/indicators/new_enterprises_m/ranking", params={"year": 2026}, headers=viewer).json()
        top = ranking["provinces"][:3]
        assert ranking["ranked_by"] == "actual_pct_of_plan"
        assert [(r["province"], r["rank"]) for r in top[:2]] == [("79", 1), ("01", 2)]
        assert top[0]["actual_pct_of_plan"] == pytest.approx(120.0) and top[1]["actual_pct_of_plan"] == 10.0
        assert len(ranking["provinces"]) == 34 and top[2]["rank"] is None  # no target, nothing to rank on
        share = client.get("/indicators/dossiers_on_time_share_m/ranking", params={"year": 2026},
                           headers=viewer).json()
        assert share["ranked_by"] == "actual_to_date"
        assert [(r["province"], r["actual_to_date"]) for r in share["provinces"][:2]] == [("01", 90.0), ("79", 0.0)]
        assert client.get("/indicators/fx_usd_vnd_end_m/ranking", params={"year": 2026},
                          headers=viewer).status_code == 422
