"""POST /rules/backtest and `controlroom rules backtest` on real chDB: stored agg_1m windows (and the hourly
rollups the migrations' views build from them) through the alerter's code, against the shipped rule."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from controlroom.warehouse import Warehouse, literal, open_warehouse
from tests.integration.api_client import api_client
from tests.integration.pipeline import ROOT, seeded_warehouse, settings_env

pytestmark = pytest.mark.integration

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S1 = {"station": "s1"}


def ts(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms}, 'UTC')"


def seed(wh: Warehouse) -> None:
    """Three hours of water level at two stations, stored as closed windows (one reading each):
    79/s1 420 cm at 00:10-00:12 (level I of the shipped rule), 470 at 01:00-01:01 (II); 48/s1 520 at 01:40 (III)."""
    high = {("79", 10): 420.0, ("79", 11): 420.0, ("79", 12): 420.0, ("79", 60): 470.0, ("79", 61): 470.0,
            ("48", 100): 520.0}
    rows = []
    for province in ("79", "48"):
        for m in range(180):
            v = high.get((province, m), 300.0)
            start = T0 + m * MIN
            rows.append(f"('water_level', '{province}', {literal(S1)}, 'station=s1', 0, {ts(start)}, "
                        f"{ts(start + MIN)}, 1, {v}, {v}, {v}, {v}, {v}, {ts(start + 30_000)}, {ts(start + 65_000)})")
    cols = ("feed, province, dims, dims_key, source_partition, window_start, window_end, count, sum, min, max, avg, "
            "last, last_ts, closed_at")
    wh.command(f"INSERT INTO {wh.database}.agg_1m ({cols}) VALUES {', '.join(rows)}")


def proposed(shipped: dict[str, Any]) -> dict[str, Any]:
    """The shipped water_level_alarm with level I raised from 400 to 430 cm, unversioned (as an edit would be)."""
    doc = {k: v for k, v in shipped.items() if k != "version"}
    doc["params"] = {**doc["params"], "levels": [{**doc["params"]["levels"][0], "above": 430},
                                                 *doc["params"]["levels"][1:]]}
    return doc


def spans(episodes: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str]]:
    return [(e["province"], e["fired"][11:16], e["ended"] and e["ended"][11:16], e["peak_severity"])
            for e in episodes]


def test_backtest_through_the_api(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        seed(client.app.state.api.warehouse)  # type: ignore[attr-defined]
        shipped = client.get("/rules/water_level_alarm", headers=keys.header("viewer")).json()
        body = {"rule": proposed(shipped), "from": "2026-01-01T07:00:00+07:00", "to": T0 // 1000 + 3 * 3600}
        assert client.post("/rules/backtest", json=body, headers=keys.header("viewer")).status_code == 403
        resp = client.post("/rules/backtest", json=body, headers=keys.header("operator"))
        assert resp.status_code == 200, resp.text
        r = resp.json()
        assert (r["rule_id"], r["rule_version"], r["from"], r["to"]) == (
            "water_level_alarm", shipped["version"] + 1, "2026-01-01T00:00:00.000Z", "2026-01-01T03:00:00.000Z")
        assert (r["resolution"]["table"], r["resolution"]["step_s"], r["windows"], r["series"]) == (
            "agg_1m", 60, 360, 2)
        assert spans(r["episodes"]) == [("79", "01:01", "01:03", "warning"), ("48", "01:41", "01:42", "critical")]
        assert r["episodes"][1]["evidence"]["threshold"] == {"op": "above", "value": 500.0, "level": "III",
                                                             "severity": "critical"}
        assert r["alerts"] == {"total": 2, "pending_only": 0, "per_day": {"2026-01-01": 2},
                               "per_province": {"48": 1, "79": 1}, "per_severity": {"warning": 1, "critical": 1}}
        assert r["current"] == {"rule_version": shipped["version"], "alerts": {
            "total": 3, "pending_only": 0, "per_day": {"2026-01-01": 3}, "per_province": {"48": 1, "79": 2},
            "per_severity": {"info": 1, "warning": 1, "critical": 1}}}
        assert (r["diff"]["only_proposed"], r["diff"]["only_current"], r["diff"]["in_both"]) == (0, 1, 2)
        assert spans(r["diff"]["episodes_only_current"]) == [("79", "00:11", "00:14", "info")]

        # ten days: hourly windows from the rollup agg_1h; the hour's max crosses the same levels
        ten_days = client.post("/rules/backtest", json={**body, "to": "2026-01-11"}, headers=keys.header("admin"))
        assert ten_days.status_code == 200, ten_days.text
        t = ten_days.json()
        assert (t["resolution"]["table"], t["windows"]) == ("agg_1h", 6)
        assert spans(t["episodes"]) == [("48", "02:00", "03:00", "critical"), ("79", "02:00", "03:00", "warning")]
        assert t["notes"] and (t["diff"]["only_current"], t["current"]["alerts"]["total"]) == (0, 2)

        new_rule = {**proposed(shipped), "id": "wl_new"}  # not in force: nothing to compare with
        fresh = client.post("/rules/backtest", json={**body, "rule": new_rule}, headers=keys.header("operator"))
        assert fresh.json()["current"] is None and fresh.json()["rule_version"] == 1

        def refused(change: dict[str, Any]) -> tuple[int, list[str], str]:
            res = client.post("/rules/backtest", json={**body, **change}, headers=keys.header("operator"))
            detail = res.json()["detail"][0]
            return res.status_code, detail["loc"], detail["msg"]

        bad = proposed(shipped)
        bad["params"]["levels"][1] = {"above": "high"}
        assert refused({"rule": bad}) == (422, ["body", "rule", "params", "levels", "1", "above"],
                                          "must be a number")
        assert refused({"to": "2026-01-01"}) == (422, ["body", "to"], "must be after from")
        assert refused({"to": "2027-03-01"})[:2] == (422, ["body", "to"])
        assert "at most 400 days" in refused({"to": "2027-03-01"})[2]
        assert refused({"from": "last week"})[:2] == (422, ["body", "from"])


def test_backtest_command(make_settings, catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    seeded_warehouse(settings, seed)
    from controlroom.alerts.rules import read_rule_docs

    shipped = next(d for d in read_rule_docs(None, catalog) if d["id"] == "water_level_alarm")
    rule_file = tmp_path / "rule.yaml"
    rule_file.write_text(yaml.safe_dump(proposed(shipped), allow_unicode=True), encoding="utf-8")
    env = settings_env(settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controlroom.cli", "rules", "backtest", str(rule_file),
                               "--from", "2026-01-01", "--to", "2026-01-01T03:00:00Z", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    table = run()
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == (f"rule water_level_alarm v{shipped['version'] + 1} (threshold), "
                        "2026-01-01T00:00:00.000Z → 2026-01-01T03:00:00.000Z")
    assert lines[1].startswith("resolution agg_1m (60 s windows): 68 series × 180 windows")
    assert [" ".join(line.split()) for line in lines if line.startswith(("total", "province", "severity"))] == [
        "total 2 3", "province 48 1 1", "province 79 1 2", "severity critical 1 1", "severity info 0 1",
        "severity warning 1 1"]
    assert "only with the current version: 1" in lines
    assert any(line.split()[:4] == ["2026-01-01T00:11:00.000Z", "2026-01-01T00:11:00.000Z",
                                    "2026-01-01T00:14:00.000Z", "79"] for line in lines)

    as_json = run("--json")
    assert as_json.returncode == 0, as_json.stderr
    doc = orjson.loads(as_json.stdout)
    assert (doc["alerts"]["total"], doc["current"]["alerts"]["total"], doc["diff"]["only_current"]) == (2, 3, 1)

    wh = open_warehouse(settings)  # an API holding the embedded warehouse: the command says what to do instead
    try:
        busy = run()
    finally:
        wh.close()
    assert busy.returncode == 2 and "controlroom rules backtest --api" in busy.stderr, busy.stderr
    rule_file.write_text(orjson.dumps({**proposed(shipped), "severity": "loud"}).decode())  # JSON is read too
    invalid = run()
    assert invalid.returncode == 2 and "rule.severity: must be one of info, warning, critical" in invalid.stderr
