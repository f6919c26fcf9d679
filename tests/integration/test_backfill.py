"""`controlroom backfill` and POST /admin/backfill: a past range's aggregates recomputed from the raw readings."""

from __future__ import annotations

import subprocess
import sys

import orjson

from controlroom.warehouse import Warehouse, open_warehouse
from sinks.backfill import backfill
from sinks.migrate import migrate
from tests.integration.api_client import api_client
from tests.integration.pipeline import ROOT, seeded_warehouse, settings_env
from tests.integration.test_api import insert_readings

MIN = 60_000
DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S1 = {"station": "s1"}


def seed(wh: Warehouse) -> None:
    """Two days of history loaded straight into `readings` (a deliberate historical load: no worker saw it)."""
    insert_readings(wh, [("a", "water_level", "01", T0 + 1_000, 10.0, S1),
                         ("b", "water_level", "01", T0 + 2_000, 30.0, S1),
                         ("c", "water_level", "01", T0 + MIN + 5, 7.0, S1),
                         ("d", "water_level", "01", T0 + DAY + 3 * MIN, 2.0, S1)])
    insert_readings(wh, [("b", "water_level", "01", T0 + 2_000, 30.0, S1)], first_offset=100)  # stored twice


def agg(wh: Warehouse) -> list[tuple[int, int, float, float, float, float]]:
    rows = wh.query(f"SELECT toUnixTimestamp64Milli(window_start) AS ws, sum(count) AS n, sum(sum) AS s, "
                    f"min(min) AS lo, max(max) AS hi, argMax(last, last_ts) AS last FROM {wh.database}.agg_1m FINAL "
                    "GROUP BY window_start ORDER BY ws")
    return [(int(r["ws"]) - T0, int(r["n"]), r["s"], r["lo"], r["hi"], r["last"]) for r in rows]


def test_backfill_recomputes_windows_and_rollups_and_is_idempotent(make_settings, catalog) -> None:  # type: ignore[no-untyped-def]
    wh = open_warehouse(make_settings())
    try:
        migrate(wh, catalog)
        seed(wh)
        seen: list[tuple[int, int]] = []
        result = backfill(wh, T0, T0 + 2 * DAY, 60, lambda done, total, so_far: seen.append((done, total)))
        want = [(0, 2, 40.0, 10.0, 30.0, 30.0), (MIN, 1, 7.0, 7.0, 7.0, 7.0),
                (DAY + 3 * MIN, 1, 2.0, 2.0, 2.0, 2.0)]
        assert agg(wh) == want
        assert (result.windows, result.readings) == (3, 4) and seen == [(1, 2), (2, 2)]  # one step per day
        hours = wh.query(f"SELECT sum(count) AS n, sum(sum) AS s FROM {wh.database}.agg_1h FINAL")
        assert hours == [{"n": 4, "s": 49.0}]  # the rollups follow
        backfill(wh, T0, T0 + 2 * DAY, 60)  # again: the same figures, nothing counted twice
        assert agg(wh) == want
        assert wh.query(f"SELECT sum(count) AS n FROM {wh.database}.agg_1d FINAL") == [{"n": 4}]
    finally:
        wh.close()


def test_backfill_command_and_clear_errors(make_settings, catalog) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    seeded_warehouse(settings, seed)
    env = settings_env(settings)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "controlroom.cli", "backfill", *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    done = run("--from", "2026-01-01", "--to", "2026-01-02")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout.strip().splitlines()[-1]) == {
        "from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "windows": 2, "readings": 3}
    backwards = run("--from", "2026-01-02", "--to", "2026-01-01")
    assert backwards.returncode == 2 and "--to must be after --from" in backwards.stderr
    garbage = run("--from", "yesterday", "--to", "2026-01-01")
    assert garbage.returncode == 2 and "--from: not epoch seconds nor an ISO 8601 time: 'yesterday'" in garbage.stderr


def test_backfill_through_the_api_for_admins_only(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings()) as (client, keys):
        seed(client.app.state.api.warehouse)  # type: ignore[attr-defined]
        body = {"from": "2026-01-01T07:00:00+07:00", "to": "2026-01-03"}
        assert client.post("/admin/backfill", json=body, headers=keys.header("viewer")).status_code == 403
        resp = client.post("/admin/backfill", json=body, headers=keys.header("admin"))
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z", "windows": 3,
                               "readings": 4}
        bad = client.post("/admin/backfill", json={"from": "2026-01-03", "to": "2026-01-01"},
                          headers=keys.header("admin"))
        assert bad.status_code == 422 and "--to must be after --from" in bad.text
        audit = client.get("/audit", params={"action": "aggregates.backfill"}, headers=keys.header("admin")).json()
        assert [a["target"] for a in audit] == ["2026-01-01T07:00:00+07:00..2026-01-03"]
