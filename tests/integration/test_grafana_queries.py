"""Every panel query of every generated board (the committed JSON) runs on the real schema in chDB after the
ClickHouse plugin's macros and the template variables are expanded as Grafana does (grafana/macros.py), and
returns the columns its panel type needs; key panels give the seeded answers and /overview's own figures."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from api.overview import read_overview
from controlroom.catalog import Catalog, default_catalog
from controlroom.warehouse import ChdbWarehouse, table_in
from grafana.layout import DASHBOARDS
from grafana.macros import ALL, QueryContext, Variable, expand
from sinks.migrate import migrate
from sinks.rows import AGG, ALERT_EVENTS, DEAD, DELIVERIES, INCIDENT_EVENTS, LATE, READINGS, SCHEMAS

pytestmark = pytest.mark.integration

DB = "controlroom"
NOW_MS = (int(time.time() * 1000) // 60_000) * 60_000 - 60_000  # the range end: a whole minute, just past
NOW = datetime.fromtimestamp(NOW_MS / 1000, UTC)
MIN = timedelta(minutes=1)


def board_files() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(DASHBOARDS.glob("*.json"))}


def insert(wh: ChdbWarehouse, table: str, rows: list[dict[str, Any]]) -> None:
    schema = SCHEMAS[table]
    full = [{f.name: r.get(f.name, _default(f.type)) for f in schema} for r in rows]
    wh.insert_arrow(table_in(DB, table), pa.Table.from_pylist(full, schema))


def _default(t: pa.DataType) -> Any:
    if pa.types.is_string(t):
        return ""
    if pa.types.is_timestamp(t):
        return NOW
    if pa.types.is_map(t):
        return []
    return 0


def reading(eid: str, feed: str, province: str, dims: dict[str, str], at: datetime, value: float) -> dict[str, Any]:
    return {"event_id": eid, "feed": feed, "province": province, "province_original": province, "ts": at,
            "value": value, "dims": list(dims.items()),
            "dims_key": ",".join(f"{k}={v}" for k, v in sorted(dims.items())),
            "source": "test", "ingested_at": at + timedelta(milliseconds=1500), "kafka_topic": f"feeds.{feed}"}


def agg(feed: str, province: str, dims_key: str, start: datetime, n: int, total: float) -> dict[str, Any]:
    return {"feed": feed, "province": province, "dims_key": dims_key, "window_start": start, "window_end": start + MIN,
            "count": n, "sum": total, "min": total / n, "max": total / n, "avg": total / n, "last": total / n,
            "last_ts": start + timedelta(seconds=30), "closed_at": start + timedelta(seconds=71),
            "dims": [tuple(kv.split("=")) for kv in dims_key.split(",") if kv]}


def alert(alert_id: str, seq: int, state: str, severity: str, feed: str, province: str, at: datetime) -> dict[str, Any]:
    return {"alert_id": alert_id, "seq": seq, "fingerprint": alert_id, "rule_id": f"rule_{feed}", "rule_version": 1,
            "rule_type": "threshold", "severity": severity, "event": state, "state": state, "feed": feed,
            "province": province, "summary_vi": f"{feed} {province}", "summary_en": f"{feed} {province}",
            "value": 1.0, "evidence": "{}", "starts_at": at, "event_at": at}


FLOOD, EVERYWHERE = "f" * 16, "e" * 16  # incident ids of the seed
BEN_THANH = "26743"  # Phường Bến Thành, TP. Hồ Chí Minh (79)
OTHER_79 = next(c.code for c in default_catalog().communes_by_province["79"] if c.code != BEN_THANH)


def incident_events(iid: str, type_id: str, province: str, feeds: list[str],
                    events: list[tuple[str, str, datetime, str]]) -> list[dict[str, Any]]:
    """An incident's events (event, state, when, by), every member firing on every event."""
    members = [{"alert_id": f"m-{f}", "feed": f, "province": province, "state": "firing", "signal": f} for f in feeds]
    opened = events[0][2]
    resolved = next((at for _e, state, at, _b in events if state == "resolved"), None)
    return [{"incident_id": iid, "seq": seq, "type": type_id, "type_version": 1, "scope": "province",
             "province": province, "severity": "critical", "event": event, "state": state,
             "title_vi": f"{type_id} vi", "title_en": f"{type_id} en", "by": by, "ack_by": by if by else "",
             "signals": feeds, "members": json.dumps(members), "alert_ids": [m["alert_id"] for m in members],
             "opened_at": opened, "resolved_at": resolved if state == "resolved" else None, "event_at": at}
            for seq, (event, state, at, by) in enumerate(events, start=1)]


@pytest.fixture(scope="module")
def wh(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Iterator[ChdbWarehouse]:
    w = ChdbWarehouse(str(tmp_path_factory.mktemp("grafana") / "warehouse"), DB)
    migrate(w, catalog)
    seed(w)
    try:
        yield w
    finally:
        w.close()


def history_windows() -> Iterator[datetime]:
    """40 days of hourly-complete history for hotline_calls 01 line=111, 2 calls per window (the tier test): one
    window every 7 minutes keeps the seed small."""
    t = (NOW - timedelta(days=40)).replace(hour=0, minute=0)
    while t < NOW - 20 * MIN:
        yield t
        t += timedelta(minutes=7)


def seed(wh: ChdbWarehouse) -> None:
    r: list[dict[str, Any]] = []
    # vn_index (national gauge, 1 expected series, cadence 15 s): 1250 two minutes ago, then 1300 20 s before
    # the range end: reporting (within 3 cadences), latest value 1300
    r.append(reading("vn1", "vn_index", "00", {}, NOW - 2 * MIN, 1250.0))
    r.append(reading("vn2", "vn_index", "00", {}, NOW - timedelta(seconds=20), 1300.0))
    # hotline_calls in 2 provinces, line 111 only: 10 + 20 + 30 in the last 5 minutes, one older (not counted)
    r.append(reading("h1", "hotline_calls", "01", {"line": "111"}, NOW - MIN, 10.0))
    r.append(reading("h2", "hotline_calls", "01", {"line": "111"}, NOW - 2 * MIN, 20.0))
    r.append(reading("h3", "hotline_calls", "79", {"line": "111"}, NOW - 3 * MIN, 30.0))
    r.append(reading("h0", "hotline_calls", "79", {"line": "111"}, NOW - 9 * MIN, 99.0))
    # dossiers resolved: 9 on time, 1 late → 90 %
    r.append(reading("d1", "dvc_dossiers_resolved", "01", {"on_time": "true"}, NOW - MIN, 9.0))
    r.append(reading("d2", "dvc_dossiers_resolved", "01", {"on_time": "false"}, NOW - MIN, 1.0))
    # water level, for the explorer: station s1 in 01 and 79
    for i in range(5):
        r.append(reading(f"w01-{i}", "water_level", "01", {"station": "s1"}, NOW - (10 - i) * MIN, 400.0 + i))
        r.append(reading(f"w79-{i}", "water_level", "79", {"station": "s1"}, NOW - (10 - i) * MIN, 90.0 + i))
    # citizen reports that name their commune (the province board's "by commune"): 2 + 3 in Bến Thành (79), 4 in
    # another commune of 79, 7 in Hoàn Kiếm (01)
    for eid, province, commune, value in (("c1", "79", BEN_THANH, 2.0), ("c2", "79", BEN_THANH, 3.0),
                                          ("c3", "79", OTHER_79, 4.0), ("c4", "01", "00070", 7.0)):
        r.append(reading(eid, "citizen_feedback", province, {"topic": "traffic"}, NOW - 30 * MIN, value)
                 | {"commune": commune})
    insert(wh, READINGS, r)
    insert(wh, READINGS, r[:3] + r[-4:])  # a sink retry: every figure must count each reading once

    windows = [agg("hotline_calls", "01", "line=111", t, 1, 2.0) for t in history_windows()]
    for i in range(15):  # the last 15 minutes: trend of the tiles
        windows.append(agg("hotline_calls", "79", "line=111", NOW - (15 - i) * MIN, 1, 5.0))
        windows.append(agg("water_level", "01", "station=s1", NOW - (15 - i) * MIN, 2, 800.0 + i))
    insert(wh, AGG, windows)

    insert(wh, ALERT_EVENTS, [
        alert("a1", 1, "firing", "critical", "water_level", "01", NOW - 5 * MIN),
        alert("a2", 1, "pending", "warning", "hotline_calls", "79", NOW - 6 * MIN),
        alert("a2", 2, "firing", "warning", "hotline_calls", "79", NOW - 4 * MIN),
        alert("a3", 1, "firing", "info", "hotline_calls", "48", NOW - 8 * MIN),
        alert("a3", 2, "resolved", "info", "hotline_calls", "48", NOW - 3 * MIN),
    ])
    insert(wh, DEAD, [{"dlq_id": f"dlq{i}", "reason": "out_of_range", "field": "value", "feed": "water_level",
                       "received_at": NOW - i * MIN} for i in range(3)])
    insert(wh, LATE, [{"event_id": "late1", "feed": "hotline_calls", "province": "01", "ts": NOW - 10 * MIN,
                       "detected_at": NOW - 2 * MIN, "status": "amended"},
                      # the same window amended again
                      {"event_id": "late2", "feed": "hotline_calls", "province": "01",
                       "ts": NOW - 10 * MIN + timedelta(seconds=1), "detected_at": NOW - 2 * MIN, "status": "amended"},
                      {"event_id": "old1", "feed": "hotline_calls", "province": "01", "ts": NOW - timedelta(days=3),
                       "detected_at": NOW - 2 * MIN, "status": "too_late"}])
    feeds_of = {}
    for f in default_catalog().feeds.values():
        feeds_of.setdefault(f.category, f.id)
    insert(wh, INCIDENT_EVENTS, [
        *incident_events(FLOOD, "flood", "01", ["water_level", "hotline_calls"], [
            ("opened", "open", NOW - 9 * MIN, ""), ("alert_joined", "open", NOW - 8 * MIN, ""),
            ("acknowledged", "acknowledged", NOW - 7 * MIN, "op"), ("commented", "acknowledged", NOW - 6 * MIN, "op"),
            ("resolved", "resolved", NOW - 2 * MIN, "")]),
        # one feed of every category: every board's annotation query has something to show
        *incident_events(EVERYWHERE, "drill", "00", sorted(feeds_of.values()), [("opened", "open", NOW - 5 * MIN, "")]),
    ])
    insert(wh, DELIVERIES, [{"delivery_id": "x1", "alert_id": "a1", "seq": 1, "status": "delivered",
                             "attempted_at": NOW - 4 * MIN}])


def ctx(range_s: int = 3600, *, interval_ms: int = 60_000, province: Any = ALL, dims: Any = ALL,
        feed: str = "water_level", indicator: str = "hotline_calls_m", form: str = "BC_NHIEMVU_THANG",
        agency: str = "hotlines") -> QueryContext:
    return QueryContext(from_ms=NOW_MS - range_s * 1000, to_ms=NOW_MS, interval_ms=interval_ms, variables={
        "feed": Variable(feed), "province": Variable(province, options=["01", "48", "79"]),
        "dims": Variable(dims, options=["station=s1"]), "indicator": Variable(indicator), "form": Variable(form),
        "agency": Variable(agency)})


def run(wh: ChdbWarehouse, sql: str, c: QueryContext | None = None) -> list[dict[str, Any]]:
    return wh.query(expand(sql, c or ctx()))


def targets(board: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(board uid, panel title, panel type, target) of every ClickHouse panel query (the Prometheus ones run on a
    real Prometheus in test_prometheus.py)."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if target["datasource"]["uid"] == "controlroom-clickhouse":
                yield board["uid"], panel["title"], panel["type"], target


def check_columns(kind: str, target: dict[str, Any], rows: list[dict[str, Any]], cols: list[str]) -> None:
    numeric = [c for c in cols if rows and all(isinstance(r[c], int | float) or r[c] is None for r in rows)
               and any(isinstance(r[c], int | float) for r in rows)]
    if kind == "timeseries" or (kind == "stat" and target["format"] == 0):
        assert cols[0] == "time", cols
        assert len(cols) >= 2
    elif kind == "geomap":
        assert {"latitude", "longitude", "code", "severity"} <= set(cols), cols
    elif kind == "stat":
        assert rows and numeric, (cols, rows[:2])
    else:
        assert cols


def test_every_panel_query_runs_and_has_its_columns(wh: ChdbWarehouse) -> None:
    boards = board_files()
    assert len(boards) == 14  # national wall, province, explorer, pipeline health, indicators, compliance, agencies,
    # 7 categories
    ran = 0
    for board in boards.values():
        for uid, title, kind, target in targets(board):
            for range_s in (3600, 7 * 86_400, 90 * 86_400):  # each rollup tier, where the query has tiers
                sql = expand(target["rawSql"], ctx(range_s, interval_ms=max(range_s * 1000 // 300, 1000)))
                assert "$" not in sql.replace("$$", ""), f"{uid} / {title}: unexpanded macro in {sql[:200]}"
                res = wh.query(sql)
                cols = _columns(wh, sql)
                check_columns(kind, target, res, cols)
                ran += 1
        for anno in board.get("annotations", {}).get("list", []):
            if anno.get("datasource", {}).get("uid") == "controlroom-clickhouse":
                rows = run(wh, anno["target"]["rawSql"])
                assert rows and {"time", "text", "tags"} <= set(rows[0]), anno["name"]
        for var in board.get("templating", {}).get("list", []):
            rows = run(wh, var["query"])
            assert rows, var["name"]
    assert ran > 100


def _columns(wh: ChdbWarehouse, sql: str) -> list[str]:
    """Column names in order, even for an empty result (DESCRIBE the query)."""
    return [r["name"] for r in wh.query(f"DESCRIBE ({sql})")]


def panel_sql(board: str, title_part: str, ref: str = "A") -> str:
    b = board_files()[board]
    for panel in b["panels"]:
        if title_part in panel["title"] or title_part in panel.get("description", ""):
            return next(t["rawSql"] for t in panel["targets"] if t["refId"] == ref)
    raise AssertionError(f"no panel {title_part!r} in {board}")


def test_national_wall_figures(wh: ChdbWarehouse, catalog: Catalog) -> None:
    async def q(built: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        return wh.query(*built)

    overview = asyncio.run(read_overview(q, DB, catalog, NOW_MS))
    feeds = {f["id"]: f for f in overview["feeds"]}

    # tiles: a counter's 5-minute total, a gauge's latest value: seeded answers and /overview's figures
    hot = run(wh, panel_sql("national-wall", "Hotline calls"))
    assert hot == [{"value": 60.0}] and feeds["hotline_calls"]["last_5m"]["sum"] == 60.0
    vn = run(wh, panel_sql("national-wall", "VN-Index"))
    assert vn == [{"value": 1300.0}] and feeds["vn_index"]["latest_value"] == 1300.0
    trend = run(wh, panel_sql("national-wall", "Hotline calls", "B"))  # the last hour of closed minutes
    history = sum(1 for t in history_windows() if t >= NOW - 60 * MIN)
    assert history >= 5 and len(trend) == 15 + history
    assert [r["trend"] for r in trend] == [2.0] * history + [5.0] * 15

    # map: 34 provinces at their coordinates, worst firing alert (a resolved one does not count)
    rows = run(wh, panel_sql("national-wall", "34 tỉnh"))
    assert len(rows) == 34
    sev = {r["code"]: r["severity"] for r in rows}
    assert sev["01"] == 3 and sev["79"] == 2 and sev["48"] == 0 and sum(sev.values()) == 5
    p01 = catalog.provinces["01"]
    assert next((r["latitude"], r["longitude"]) for r in rows if r["code"] == "01") == (p01.lat, p01.lon)

    firing = run(wh, panel_sql("national-wall", "Firing alerts"))
    assert [a["alert_id"] for a in firing] == ["a1", "a2"]

    health = {r["feed"]: r for r in run(wh, panel_sql("national-wall", "Feed health"))}
    assert len(health) == 25
    status = {2: "reporting", 1: "degraded", 0: "silent"}
    assert {f: status[r["health"]] for f, r in health.items()} == {f: v["status"] for f, v in feeds.items()}
    assert health["vn_index"]["health"] == 2 and health["hotline_calls"]["health"] == 1
    assert health["hotline_calls"]["expected"] == 34 * 5 == feeds["hotline_calls"]["series_expected"]

    rate = run(wh, panel_sql("national-wall", "On-time rate"))
    assert rate == [{"on_time_rate_pct": 90.0}]
    assert overview["public_services"]["on_time_rate_pct"] == 90.0


def test_long_ranges_read_the_rollups_with_the_same_totals(wh: ChdbWarehouse) -> None:
    """The category series of hotline_calls over 30 full days: the same total whichever tier answers."""
    sql = panel_sql("category-focal-issues", "Hotline calls")
    day0 = (NOW - timedelta(days=35)).replace(hour=0, minute=0)
    totals = {}
    for days in (1, 30, 33):  # agg_1m (1 day), agg_1h (30 days), agg_1d (33 days)
        c = QueryContext(from_ms=int(day0.timestamp() * 1000),
                         to_ms=int((day0 + timedelta(days=days)).timestamp() * 1000) - 1000,
                         interval_ms=60_000, variables={})
        rows = wh.query(expand(sql, c))
        totals[days] = (sum(r["value"] for r in rows), len(rows))
    one_day = 2.0 * len(range(0, 1440, 7))  # windows every 7 minutes from midnight, 2 calls each
    assert abs(totals[1][0] - one_day) <= 2 * 2.0  # the 7-minute grid shifts a little across days
    assert totals[1][1] == len(range(0, 1440, 7))  # 1-minute buckets: one point per window
    assert totals[30][1] == 30 * 24 and totals[33][1] == 33  # hourly points; daily points
    direct = wh.query(f"SELECT sum(sum) AS s FROM {DB}.agg_1m FINAL WHERE feed = 'hotline_calls' AND province = '01' "
                      "AND window_start >= {a:DateTime64(3)} AND window_start < {b:DateTime64(3)}",
                      {"a": day0, "b": day0 + timedelta(days=30)})
    assert totals[30][0] == direct[0]["s"]
    direct = wh.query(f"SELECT sum(sum) AS s FROM {DB}.agg_1m FINAL WHERE feed = 'hotline_calls' AND province = '01' "
                      "AND window_start >= {a:DateTime64(3)} AND window_start < {b:DateTime64(3)}",
                      {"a": day0, "b": day0 + timedelta(days=33)})
    assert totals[33][0] == direct[0]["s"]


def test_explorer_variables_and_all(wh: ChdbWarehouse) -> None:
    raw = panel_sql("feed-explorer", "Raw readings")
    assert len(run(wh, raw, ctx())) == 10  # All provinces, All dims: both stations' 5 readings
    assert len(run(wh, raw, ctx(province=["01"]))) == 5
    assert len(run(wh, raw, ctx(province=["01", "79"], dims=["station=s1"]))) == 10
    assert run(wh, raw, ctx(province=["48"])) == []
    agg_rows = run(wh, panel_sql("feed-explorer", "Aggregated"), ctx(province=["01"]))
    assert [r["readings"] for r in agg_rows] == [2] * 15 and agg_rows[0]["mean"] == 400.0


def test_province_board(wh: ChdbWarehouse) -> None:
    """The board the national wall's map and alerts open: one province's feeds, alerts and communes."""
    feeds = {r["feed"]: r for r in run(wh, panel_sql("province", "Feeds of the province"), ctx(province=["79"]))}
    assert set(feeds) == {"hotline_calls"}  # the windows seeded in 79
    assert (feeds["hotline_calls"]["readings"], feeds["hotline_calls"]["total"]) == (15, 75.0)
    alerts = run(wh, panel_sql("province", "Firing alerts"), ctx(province=["79"]))
    assert [(a["alert_id"], a["province"]) for a in alerts] == [("a2", "79")]
    places = run(wh, panel_sql("province", "By commune"), ctx(province=["79"]))
    assert [(p["feed"], p["commune"], p["name"], p["readings"], p["total"]) for p in places] == [
        ("citizen_feedback", BEN_THANH, "Phường Bến Thành", 2, 5.0),  # the retried insert counts once
        ("citizen_feedback", OTHER_79, default_catalog().communes[OTHER_79].name, 1, 4.0)]
    hanoi = run(wh, panel_sql("province", "By commune"), ctx(province=["01"]))
    assert [(p["commune"], p["name"], p["total"]) for p in hanoi] == [("00070", "Phường Hoàn Kiếm", 7.0)]
    assert run(wh, panel_sql("province", "By commune"), ctx(province=["48"])) == []


def test_pipeline_figures(wh: ChdbWarehouse) -> None:
    dead = run(wh, panel_sql("pipeline-health", "Dead letters per feed"))
    assert sum(r["dead_letters"] for r in dead) == 3
    amended = run(wh, panel_sql("pipeline-health", "Amended windows"))
    assert [(r["feed"], r["amended_windows"]) for r in amended] == [("hotline_calls", 1)]
    too_late = run(wh, panel_sql("pipeline-health", "Too-late readings"))
    assert [(r["feed"], r["too_late"]) for r in too_late] == [("hotline_calls", 1)]
    lat = run(wh, panel_sql("pipeline-health", "Sink latency"))
    assert lat and {r["p50_s"] for r in lat} == {1.5}
    states = {(r["state"], r["severity"]): r["alerts"] for r in run(wh, panel_sql("pipeline-health", "Alerts by"))}
    assert states == {("firing", "critical"): 1, ("firing", "warning"): 1, ("resolved", "info"): 1}


def annotations(wh: ChdbWarehouse, board: str, c: QueryContext | None = None) -> list[tuple[str, str, str]]:
    """(event, incident id, text) of the board's incident annotations."""
    anno = next(a for a in board_files()[board]["annotations"]["list"] if a["name"] == "Incidents")
    rows = run(wh, anno["target"]["rawSql"], c)
    return [(r["tags"][3], r["text"].rsplit(" · ", 1)[1], r["text"]) for r in rows]


def test_incident_annotations(wh: ChdbWarehouse) -> None:
    """Each board shows the lifecycle (opened, acknowledged, resolved; not joins or comments) of the incidents
    that have a member alert on its feeds."""
    local = annotations(wh, "category-regional-local")  # water_level
    assert [(e, i) for e, i, _t in local] == [("opened", FLOOD), ("acknowledged", FLOOD), ("opened", EVERYWHERE),
                                              ("resolved", FLOOD)]
    assert local[1][2] == f"acknowledged · flood en · op · {FLOOD}"
    assert [(e, i) for e, i, _t in annotations(wh, "category-focal-issues")][:2] == [("opened", FLOOD),
                                                                                 ("acknowledged", FLOOD)]
    assert [(e, i) for e, i, _t in annotations(wh, "category-direction-operations")] == [("opened", EVERYWHERE)]
    explorer = [(e, i) for e, i, _t in annotations(wh, "feed-explorer")]  # feed water_level, all provinces
    assert explorer == [("opened", FLOOD), ("acknowledged", FLOOD), ("resolved", FLOOD)]
    assert annotations(wh, "feed-explorer", ctx(province=["79"])) == []
    assert len(annotations(wh, "feed-explorer", ctx(feed="hotline_calls", province=["01", "48"]))) == 3
    assert annotations(wh, "feed-explorer", ctx(feed="gold_price")) == []
    # the time range applies to the events: the last 3 minutes hold only the resolution
    recent = QueryContext(from_ms=NOW_MS - 180_000, to_ms=NOW_MS, interval_ms=60_000, variables=ctx().variables)
    assert [(e, i) for e, i, _t in annotations(wh, "feed-explorer", recent)] == [("resolved", FLOOD)]


def test_conditional_all_path_is_the_plugins(tmp_path: Path) -> None:
    sql = "WHERE $__conditionalAll(province IN (${province}), $province)"
    assert expand(sql, ctx()) == "WHERE 1=1"
    assert expand(sql, ctx(province=["01", "79"])) == "WHERE province IN ('01','79')"


def test_indicators_board_equals_the_api_derivation(wh: ChdbWarehouse) -> None:
    """The Indicators board's months are GET /indicators/{id}'s (the same aggregates, the API's own SQL and folding),
    its plan line the national target ÷ 12, its ranking the provinces' share of their targets."""
    from api.indicators_sql import indicator_months_sql
    from controlroom.indicators import MonthFigures, default_indicators, period_of, period_values

    ind = default_indicators()["hotline_calls_m"]
    range_s = 60 * 86_400
    board = run(wh, panel_sql("indicators", "National, per month"), ctx(range_s))
    assert board, "no month"
    lo, hi = NOW_MS - range_s * 1000, NOW_MS
    api_rows = wh.query(*indicator_months_sql(DB, ind, None, lo, hi))
    months = [MonthFigures(int(r["ym"]), float(r["total"]), int(r["n"]), float(r["last_value"]),
                           int(r["last_at"])) for r in api_rows]
    periods = [period_of("month", _ms(r["time"])) for r in board]
    assert [r["value"] for r in board] == pytest.approx(period_values(ind, periods, months))
    assert all(r["plan"] is None for r in board)  # no target yet: no plan line (not a line at 0)

    year = NOW.year  # the board's plan and ranking read this year's targets (Vietnamese time; not at New Year)
    wh.command(f"INSERT INTO {DB}.indicator_targets (indicator, province, year, version, value, set_by, set_at, note) "
               f"VALUES ('hotline_calls_m', '00', {year}, 1, 1200, 't', now64(3), ''), "
               f"('hotline_calls_m', '79', {year}, 1, 60, 't', now64(3), ''), "
               f"('hotline_calls_m', '79', {year}, 2, 300, 't', now64(3), 'revised')")
    try:
        planned = run(wh, panel_sql("indicators", "National, per month"), ctx(range_s))
        assert {r["plan"] for r in planned if datetime.fromtimestamp(_ms(r["time"]) / 1000, UTC).year == year} \
            == {100.0}
        ranked = run(wh, panel_sql("indicators", "Provinces ranked"), ctx(7200))  # 2 h: 01's windows every 7 min

        def api_total(province: str) -> float:
            return sum(float(r["total"]) for r in wh.query(*indicator_months_sql(DB, ind, province,
                                                                                 NOW_MS - 7_200_000, NOW_MS)))

        assert api_total("79") > 0 and api_total("01") > 0
        assert [(r["province"], r["actual"], r["target"]) for r in ranked][:2] == [
            ("79", api_total("79"), 300.0), ("01", api_total("01"), None)]  # with a target first, then by figure
        assert ranked[0]["pct_of_plan"] == round(100 * api_total("79") / 300, 1)
        assert ranked[0]["name"] == "Thành phố Hồ Chí Minh"
    finally:
        wh.command(f"TRUNCATE TABLE {DB}.indicator_targets")


def _ms(t: Any) -> int:
    """A DateTime as chDB returns it (epoch seconds, or a datetime) → epoch ms."""
    return int(t) * 1000 if isinstance(t, int) else int(t.timestamp() * 1000)


def test_reporting_compliance_board(wh: ChdbWarehouse) -> None:
    at = NOW.strftime("%Y-%m-%d %H:%M:%S")
    wh.command(f"INSERT INTO {DB}.report_submissions (form, period, unit, revision, status, values, problems, agency, "
               "submitted_by, submitted_at, on_time, comment) VALUES "
               f"('BC_NHIEMVU_THANG', '2026-10', '01', 1, 'draft', {{}}, '[]', 'a', 'k', '{at}', 0, ''), "
               f"('BC_NHIEMVU_THANG', '2026-10', '01', 2, 'submitted', {{}}, '[]', 'a', 'k', '{at}', 1, ''), "
               f"('BC_NHIEMVU_THANG', '2026-10', '01', 3, 'submitted', {{}}, '[]', 'a', 'k', '{at}', 0, ''), "
               f"('BC_NHIEMVU_THANG', '2026-10', '79', 1, 'submitted', {{}}, '[]', 'a', 'k', '{at}', 0, ''), "
               f"('BC_NHIEMVU_THANG', '2026-10', '48', 1, 'draft', {{}}, '[]', 'a', 'k', '{at}', 0, '')")
    wh.command(f"INSERT INTO {DB}.report_reviews VALUES ('BC_NHIEMVU_THANG', '2026-10', '01', 3, 'approve', 'c', "
               f"'{at}', ''), ('BC_NHIEMVU_THANG', '2026-10', '01', 3, 'accept', 'n', '{at}', '')")
    try:
        [rate] = run(wh, panel_sql("reporting-compliance", "Reporting rates"))
        assert (rate["form"], rate["period"], rate["submitted"], rate["on_time"], rate["expected"], rate["missing"]) \
            == ("BC_NHIEMVU_THANG", "2026-10", 2, 1, 35, 33)  # a draft is not a submission
        units = {r["unit"]: r for r in run(wh, panel_sql("reporting-compliance", "Units of the form"))}
        assert (units["01"]["revisions"], units["01"]["on_time"], units["01"]["drafts"]) == (3, 1, 1)
        assert (units["48"]["on_time"], units["48"]["drafts"]) == (0, 1)
        steps = run(wh, panel_sql("reporting-compliance", "Review steps"))
        assert [(r["step"], r["steps"]) for r in steps] == [("accept", 1), ("approve", 1)]
    finally:
        wh.command(f"TRUNCATE TABLE {DB}.report_submissions")
        wh.command(f"TRUNCATE TABLE {DB}.report_reviews")


def test_agencies_board_ranks_bodies_and_drills_down(wh: ChdbWarehouse) -> None:
    """The Agencies board over the seed (hotlines' calls in 01 and 79 for 40 days, hydromet's stations): its ranking
    is the mean quality of each body's contract-hours, recomputed here from contract_hourly; the drill-down's daily
    score is agency_scores_daily's (GET /agencies/{id}), its contracts table the body's feeds."""
    range_s = 7 * 86_400
    hourly = wh.query(f"SELECT agency, feed, quality FROM {DB}.contract_hourly WHERE quality IS NOT NULL AND "
                      f"hour >= toDateTime({(NOW_MS // 1000) - range_s}) AND hour <= toDateTime({NOW_MS // 1000})")
    by_agency: dict[str, list[float]] = {}
    for r in hourly:
        by_agency.setdefault(r["agency"], []).append(r["quality"])
    ranked = run(wh, panel_sql("agencies", "Agencies ranked"), ctx(range_s))
    assert {r["agency"]: r["score"] for r in ranked} == {
        a: pytest.approx(round(sum(q) / len(q), 1), abs=0.051) for a, q in by_agency.items()}
    assert [r["score"] for r in ranked] == sorted(r["score"] for r in ranked)  # worst first
    hotlines = next(r for r in ranked if r["agency"] == "hotlines")
    assert 0 < hotlines["score"] < 100 and hotlines["worst_feed"] == "hotline_calls"
    assert len(ranked) == len({c.agency for c in default_catalog().contracts.values()})  # every body, judged
    daily = run(wh, panel_sql("agencies", "Daily score"), ctx(range_s))
    stored = wh.query(f"SELECT toDateTime(day) AS time, score FROM {DB}.agency_scores_daily "
                      "WHERE agency = 'hotlines' ORDER BY time")
    assert len(daily) >= 7 and [r["score"] for r in daily] == pytest.approx(
        [r["score"] for r in stored if r["time"] in {d["time"] for d in daily}])
    contracts = run(wh, panel_sql("agencies", "Contracts of the agency"), ctx(range_s))
    assert [r["feed"] for r in contracts] == ["hotline_calls"] and contracts[0]["readings_in"] > 0
    water = run(wh, panel_sql("agencies", "Contracts of the agency"), ctx(range_s, agency="hydromet"))
    assert [r["feed"] for r in water] == ["water_level"] and water[0]["dead_in"] == 0
