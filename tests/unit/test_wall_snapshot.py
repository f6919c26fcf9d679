"""The live wall's snapshot assembly (api/wall.py): pure, no services."""

from __future__ import annotations

import orjson

from api.overview import SeriesLatest, build_overview, feed_figures, feed_status, on_time_rate
from api.wall import (
    MAP_H,
    MAP_W,
    TREND_MINUTES,
    TrendPoint,
    build_agencies,
    build_province,
    build_wall,
    incident_type_name,
    project,
    trend_delta_pct,
    trend_points,
    trend_window,
    wall_agencies,
    worst,
)
from controlroom.catalog import HEADLINE_FEEDS, Catalog
from controlroom.schema import ms_to_iso

NOW = 1_767_225_600_000 + 42_000  # 2026-01-01T00:00:42Z


def row(feed: str, province: str, dkey: str, value: float, age_ms: int = 1_000) -> SeriesLatest:
    return SeriesLatest(feed, province, dkey, NOW - age_ms, value, 1, value, value, value)


def test_headline_feed_per_category(catalog: Catalog) -> None:
    assert set(HEADLINE_FEEDS) == set(catalog.categories)
    assert all(catalog.feeds[f].category == c for c, f in HEADLINE_FEEDS.items())


def test_trend_window_is_the_last_hour_of_closed_minutes() -> None:
    assert trend_window(NOW) == (NOW - 42_000 - 3_600_000, NOW - 42_000)


def test_sparkline_has_a_slot_per_minute_and_gaps_stay_gaps() -> None:
    start, _ = trend_window(NOW)
    rows = [{"t": start, "n": 2, "total": 8.0}, {"t": start + 59 * 60_000, "n": 4, "total": 4.0}]
    gauge = trend_points(rows, "gauge", start)
    assert len(gauge) == TREND_MINUTES == 60
    assert [p.t_ms for p in gauge] == list(range(start, start + 3_600_000, 60_000))
    assert (gauge[0].value, gauge[-1].value) == (4.0, 1.0) and all(p.value is None for p in gauge[1:-1])
    assert trend_delta_pct(gauge, "gauge") is None  # two minutes with a window: no basis


def test_trend_values_and_delta() -> None:
    rows = [{"t": i * 60_000, "n": 2, "total": float(v)} for i, v in enumerate([10] * 5 + [12] * 5)]
    assert [p.value for p in trend_points(rows, "counter")][-1] == 12.0
    assert [p.value for p in trend_points(rows, "gauge")][-1] == 6.0  # a gauge's minute is its average
    points = trend_points(rows, "counter")
    assert trend_delta_pct(points, "counter") == 20.0
    assert trend_delta_pct(points[:9], "counter") is None  # not enough minutes for a basis
    assert trend_delta_pct([TrendPoint(i, 0.0) for i in range(10)], "counter") is None


def test_worst_severity() -> None:
    assert worst(["info", "critical", "warning"]) == "critical"
    assert worst(["info", "bogus"]) == "info"
    assert worst([]) is None


def test_map_keeps_every_province_inside_and_north_up(catalog: Catalog) -> None:
    xy = project(catalog)
    assert len(xy) == 34
    assert all(0 <= x <= MAP_W and 0 <= y <= MAP_H for x, y in xy.values())
    hanoi, hcmc = xy["01"], xy["79"]
    assert hanoi[1] < hcmc[1]  # Hà Nội is north of Hồ Chí Minh City: higher on the map


def test_feed_status_and_on_time_rate() -> None:
    assert (feed_status(68, 68), feed_status(68, 3), feed_status(68, 0)) == ("reporting", "degraded", "silent")
    rows = [row("dvc_dossiers_resolved", "01", "on_time=true", 57), row("dvc_dossiers_resolved", "01",
                                                                        "on_time=false", 3),
            row("dvc_dossiers_received", "01", "level=full", 100)]
    assert on_time_rate(rows) == {"resolved_5m": 60, "on_time_5m": 57, "on_time_rate_pct": 95.0}
    assert on_time_rate([])["on_time_rate_pct"] is None


def test_build_wall_colours_provinces_by_worst_firing_alert(catalog: Catalog) -> None:
    rows = [row("hotline_calls", "01", "line=113", 7), row("vn_index", "00", "", 1650.5)]
    overview = build_overview(catalog, rows, now_ms=NOW, dead_letters_recent=0, late_recent=0)

    def firing(province: str, severity: str, i: int) -> dict[str, object]:
        return {"alert_id": f"a{i}", "severity": severity, "rule_id": "r", "feed": "hotline_calls",
                "province": province, "summary_vi": f"vi {i}", "summary_en": f"en {i}", "starts_at_ms": NOW - i,
                "ack_by": ""}

    alerts = [firing("01", "critical", 1), firing("01", "info", 2), firing("79", "warning", 3), firing("00", "info", 4)]
    trends = {"hotline_calls": [{"t": NOW - 120_000, "n": 3, "total": 9.0}]}
    wall = build_wall(catalog, overview, alerts, trends, refresh_s=5.0)
    tiles = {t["id"]: t for t in wall["tiles"]}
    assert len(tiles) == 7
    assert (tiles["focal_issues"]["value"], tiles["focal_issues"]["trend"]) == (7.0, [[NOW - 120_000, 9.0]])
    assert tiles["international_indices"]["value"] == 1650.5  # a gauge: its latest value
    assert tiles["daily_news"]["value"] == 0  # nothing in 5 minutes: zero, not missing
    sev = {p["code"]: p["severity"] for p in wall["provinces"]}
    assert (sev["01"], sev["79"], sev["48"]) == ("critical", "warning", None)
    assert len(sev) == 34 and "00" not in sev  # a national alert is in the table, not on the map
    assert [a["province_en"] for a in wall["alerts"]] == ["Hanoi", "Hanoi", "Ho Chi Minh City", "National"]
    assert wall["alerts_by_severity"] == {"info": 2, "warning": 1, "critical": 1}
    assert wall["health"] == {"reporting": 1, "degraded": 1, "silent": 23}  # vn_index whole, hotline partial
    assert wall["public_services"] == overview["public_services"]
    assert wall["alerts"][0]["inhibited_by"] is None


def test_the_wall_says_what_inhibits_an_alert(catalog: Catalog) -> None:
    overview = build_overview(catalog, [], now_ms=NOW, dead_letters_recent=0, late_recent=0)
    base = {"severity": "warning", "province": "01", "summary_vi": "vi", "summary_en": "en", "starts_at_ms": NOW,
            "ack_by": "", "dims": {"station": "s1"}}
    source = {**base, "alert_id": "a" * 16, "rule_id": "feed_down", "feed": "water_level", "province": "",
              "dims": {}, "inhibited_by": ""}
    muted = {**base, "alert_id": "b" * 16, "rule_id": "connection_lost", "feed": "water_level",
             "inhibited_by": "a" * 16}
    orphan = {**muted, "alert_id": "c" * 16, "inhibited_by": "d" * 16}  # its source is not among the rows read
    wall = build_wall(catalog, overview, [source, muted, orphan], {}, refresh_s=5.0)
    notes = {a["alert_id"]: (a["inhibited_by"], a["inhibited_en"], a["inhibited_vi"]) for a in wall["alerts"]}
    assert notes["a" * 16] == (None, None, None)
    assert notes["b" * 16] == ("a" * 16, f"inhibited by {'a' * 16} (feed_down on water_level)",
                               f"bị ức chế bởi {'a' * 16} (feed_down trên water_level)")
    assert notes["c" * 16][1] == f"inhibited by {'d' * 16}"


def incident_row(iid: str, type_id: str, province: str, state: str, severity: str, title: tuple[str, str],
                 members: list[tuple[str, str]], opened_ms: int) -> dict[str, object]:
    """An incidents_sql row (members as the JSON string the table stores)."""
    return {"incident_id": iid, "seq": 3, "type": type_id, "type_version": 1, "scope": "province",
            "province": province, "severity": severity, "event": "alert_joined", "state": state,
            "title_vi": title[0], "title_en": title[1], "assignee": "", "ack_by": "", "ack_comment": "",
            "signals": ["water_level"], "alert_ids": [a for a, _ in members],
            "members": orjson.dumps([{"alert_id": a, "state": st, "signal": "water_level"}
                                     for a, st in members]).decode(),
            "opened_at": opened_ms, "resolved_at": None, "event_at": opened_ms}


def test_the_wall_shows_open_incidents_and_highlights_their_province(catalog: Catalog) -> None:
    overview = build_overview(catalog, [], now_ms=NOW, dead_letters_recent=0, late_recent=0)
    rows = [
        incident_row("1" * 16, "flood", "46", "open", "critical", ("Lũ lụt – Thành phố Huế", "Flooding – Hue"),
                     [("a1", "firing"), ("a2", "firing"), ("a3", "resolved")], NOW - 3_725_000),
        incident_row("2" * 16, "pollution_episode", "01", "acknowledged", "warning",
                     ("Ô nhiễm không khí – Thành phố Hà Nội", "Air-pollution episode – Hanoi"),
                     [("b1", "firing")], NOW - 60_000),
        incident_row("3" * 16, "market_shock", "00", "open", "warning",
                     ("Biến động thị trường – toàn quốc", "Market shock – nationwide"), [("c1", "firing")], NOW),
        incident_row("4" * 16, "flood", "79", "resolved", "critical", ("Lũ lụt – x", "Flooding – x"), [], NOW),
    ]
    wall = build_wall(catalog, overview, [], {}, refresh_s=5.0, incidents=rows)
    shown = {i["incident_id"]: i for i in wall["incidents"]}
    assert list(shown) == ["1" * 16, "2" * 16, "3" * 16] and wall["incidents_active"] == 3  # resolved: not shown
    flood = shown["1" * 16]
    assert (flood["type_vi"], flood["type_en"]) == ("Lũ lụt", "Flooding")  # the title without its province
    assert (flood["province_vi"], flood["province_en"]) == (catalog.provinces["46"].name_vi,
                                                            catalog.provinces["46"].name_en)
    assert (flood["alerts"], flood["alerts_firing"], flood["state"]) == (3, 2, "open")
    assert flood["age_s"] == 3_725 and flood["opened_at"] == ms_to_iso(NOW - 3_725_000)
    assert shown["2" * 16]["state"] == "acknowledged" and shown["2" * 16]["type_en"] == "Air-pollution episode"
    national = shown["3" * 16]
    assert (national["type_vi"], national["type_en"], national["province_en"], national["on_map"]) == (
        "Biến động thị trường", "Market shock", "National", False)
    marked = {p["code"]: p["incidents"] for p in wall["provinces"] if p["incidents"]}
    assert marked == {"46": ["1" * 16], "01": ["2" * 16]}  # a national incident is in the tile, not on the map
    assert build_wall(catalog, overview, [], {}, refresh_s=5.0)["incidents"] == []


def test_incident_type_name_falls_back_to_the_title(catalog: Catalog) -> None:
    assert incident_type_name("Lũ lụt – Thành phố Hà Nội", catalog, "01", "vi") == "Lũ lụt"
    assert incident_type_name("Flood in Hanoi", catalog, "01", "en") == "Flood in Hanoi"  # no separator
    assert incident_type_name("Hanoi", catalog, "01", "en") == "Hanoi"


def test_province_page_figures_are_overviews_over_its_series(catalog: Catalog) -> None:
    rows = [row("hotline_calls", "79", f"line={line}", 5) for line in ("111", "113", "114", "115", "1022")]
    rows += [row("hotline_calls", "01", "line=113", 100), row("water_level", "79", "station=s1", 300),
             row("water_level", "79", "station=s2", 500, age_ms=3_600_000), row("vn_index", "00", "", 1650.0)]
    feeds = {f["id"]: f for f in feed_figures(catalog, rows, "79", NOW)}
    assert len(feeds) == 22 and "vn_index" not in feeds  # the provincial feeds only
    calls, water = feeds["hotline_calls"], feeds["water_level"]
    assert (calls["status"], calls["series_reporting"], calls["last_5m"]["sum"]) == ("reporting", 5, 25.0)
    assert (water["status"], water["series_expected"], water["latest_value"]) == ("degraded", 2, 300.0)
    assert feeds["electricity_load"]["status"] == "silent"

    start, _ = trend_window(NOW)
    trends = {"hotline_calls": [{"t": start + i * 60_000, "n": 5, "total": 20.0 + i} for i in range(60)]}
    firing = [{"alert_id": "a1", "severity": "warning", "rule_id": "r", "feed": "hotline_calls", "province": "79",
               "summary_vi": "vi", "summary_en": "en", "starts_at_ms": NOW - 1, "ack_by": ""}]
    communes = [{"feed": "hotline_calls", "commune": "26743", "n": 4, "total": 12.0, "last_ms": NOW - 5_000},
                {"feed": "water_level", "commune": "26743", "n": 2, "total": 601.0, "last_ms": NOW - 5_000},
                {"feed": "hotline_calls", "commune": "00070", "n": 1, "total": 3.0, "last_ms": NOW}]  # not in 79
    page = build_province(catalog, "79", list(feeds.values()), firing, trends, communes, generated_at=ms_to_iso(NOW),
                          refresh_s=5.0, trend_from_ms=start)
    assert page["province"] == {"code": "79", "name_vi": "Thành phố Hồ Chí Minh", "name_en": "Ho Chi Minh City",
                                "kind": "city", "legacy_codes": ["74", "77", "79"], "communes": 168}
    tiles = {t["feed"]: t for t in page["tiles"]}
    assert tiles["hotline_calls"]["value"] == 25.0 and tiles["water_level"]["value"] == 300.0
    assert [v for _t, v in tiles["hotline_calls"]["trend"]] == [20.0 + i for i in range(60)]
    assert len(tiles["water_level"]["trend"]) == 60 and {v for _t, v in tiles["water_level"]["trend"]} == {None}
    assert page["severity"] == "warning" and [a["alert_id"] for a in page["alerts"]] == ["a1"]
    places = {p["feed"]: p for p in page["places"]}
    assert set(places) == {"hotline_calls", "water_level", "citizen_feedback", "sar_incidents"}
    assert places["hotline_calls"]["communes"] == [{"code": "26743", "name": "Phường Bến Thành", "kind": "phường",
                                                    "readings": 4, "value": 12.0, "last": ms_to_iso(NOW - 5_000)}]
    assert places["water_level"]["communes"][0]["value"] == 300.5  # a gauge: the average of its readings
    assert places["hotline_calls"]["communes_in_province"] == 168


# --- the periodic half: reports due / overdue, indicators against plan ------------------------------------

def test_reports_tile_counts_due_and_overdue_per_form_as_compliance_does() -> None:
    from api.wall import report_periods, reports_tile
    from controlroom.reports import default_forms

    forms = {c: f for c, f in default_forms().items() if c in ("BC_NHIEMVU_THANG", "BC_KTXH_THANG")}
    now = 1_796_140_800_000  # 2026-12-01T17:00:00Z = 2 December, 00:00 in Vietnam
    periods = report_periods(forms, now)
    # November is due for both (tasks by 5 December, the socio-economic report by the 20th); October overdue
    assert [(f.code, stage, p.label) for f, stage, p in periods] == [
        ("BC_KTXH_THANG", "due", "2026-11"), ("BC_KTXH_THANG", "overdue", "2026-10"),
        ("BC_NHIEMVU_THANG", "due", "2026-11"), ("BC_NHIEMVU_THANG", "overdue", "2026-10")]
    units = ["00", "01", "79"]
    rows = [{"form": "BC_NHIEMVU_THANG", "period": "2026-11", "unit": "01", "on_time": 1},
            {"form": "BC_NHIEMVU_THANG", "period": "2026-10", "unit": "79", "on_time": 0},
            {"form": "BC_NHIEMVU_THANG", "period": "2026-10", "unit": "00", "on_time": 1},
            {"form": "BC_KTXH_THANG", "period": "2026-10", "unit": "48", "on_time": 1}]  # not a unit shown
    tile = reports_tile(periods, units, rows, now)
    assert tile["due"] == {"forms": 2, "expected": 6, "submitted": 1, "on_time": 1, "missing": 5,
                           "next_deadline": "2026-12-05T17:00:00.000Z"}
    assert tile["overdue"] == {"forms": 2, "expected": 6, "submitted": 2, "on_time": 1, "missing": 4,
                               "next_deadline": None}
    first = tile["forms"][0]  # the due ones first, the nearest deadline first
    assert (first["form"], first["stage"], first["days"], first["missing"]) == ("BC_NHIEMVU_THANG", "due", 4.0, 2)


def test_indicator_rows_state_plan_actual_and_the_share_of_the_year(catalog: Catalog) -> None:
    from api.wall import indicator_rows
    from controlroom.indicators import default_indicators, year_periods

    ind = default_indicators()["fdi_registered_m"]
    periods = year_periods(ind, 2026)
    now = periods[3].start_ms  # 1 April, Vietnamese time: three months complete
    values = [10.0, 20.0, 30.0, 5.0] + [None] * 8
    [row_] = indicator_rows([{"indicator": ind, "unit": "00", "year": 2026, "periods": periods, "values": values,
                              "target": 400.0}], now)
    assert (row_["indicator"], row_["province"], row_["actual_to_date"], row_["target"]) == (
        "fdi_registered_m", "00", 65.0, 400.0)
    assert row_["actual_pct_of_plan"] == 65.0 / 4 and row_["projection"] == 240.0  # 20 a month run rate x 12
    assert row_["year_elapsed_pct"] == round(100 * (now - periods[0].start_ms)
                                             / (periods[-1].end_ms - periods[0].start_ms), 1) == 24.7
    [no_plan] = indicator_rows([{"indicator": ind, "unit": "01", "year": 2026, "periods": periods,
                                 "values": [None] * 12, "target": None}], now)
    assert (no_plan["actual_to_date"], no_plan["actual_pct_of_plan"], no_plan["projection"]) == (None, None, None)


def test_report_deadline_alerts_stay_off_the_map_and_are_counted_apart(catalog: Catalog) -> None:
    overview = build_overview(catalog, [], now_ms=NOW, dead_letters_recent=0, late_recent=0)
    base = {"rule_id": "r", "summary_vi": "", "summary_en": "", "starts_at_ms": NOW, "ack_by": ""}
    firing = [{**base, "alert_id": "a1", "severity": "warning", "rule_type": "report_deadline",
               "feed": "BC_NHIEMVU_THANG", "province": "01"},
              {**base, "alert_id": "a2", "severity": "info", "rule_type": "threshold", "feed": "water_level",
               "province": "79"}]
    wall = build_wall(catalog, overview, firing, {}, refresh_s=5.0, periodic={"reports": {"due": {}}})
    assert [a["alert_id"] for a in wall["alerts"]] == ["a2"] and wall["alerts_firing"] == 1
    assert wall["report_alerts_firing"] == 1
    assert {p["code"]: p["severity"] for p in wall["provinces"]}["01"] is None
    assert wall["reports"] == {"due": {}} and wall["indicators"] == []


def test_a_map_of_one_province_is_its_centre(catalog: Catalog) -> None:
    """A key scoped to one province: the map has no extent to scale (it divided by zero)."""
    import dataclasses

    one = dataclasses.replace(catalog, provinces={"01": catalog.provinces["01"]})
    assert project(one) == {"01": (MAP_W / 2, MAP_H / 2)}


def test_agencies_view_ranks_bodies_worst_first_with_trend_and_worst_contract(catalog: Catalog) -> None:
    days = ["2026-11-30", "2026-12-01", "2026-12-02"]
    daily = [{"agency": "hydromet", "day": "2026-12-01", "score": 90.0}, {"agency": "hydromet", "day": "2026-12-02",
                                                                          "score": 60.0},
             {"agency": "ioc_79", "day": "2026-12-02", "score": 95.0}]
    contracts = [{"agency": "hydromet", "feed": "water_level", "quality": 60.0},
                 {"agency": "mof", "feed": "commodity_prices", "quality": None}]
    snap = build_agencies(catalog, daily, contracts, days=days, generated_at="2026-12-02T03:00:00Z", refresh_s=5)
    rows = {r["id"]: r for r in snap["agencies"]}
    assert [r["id"] for r in snap["agencies"][:2]] == ["hydromet", "ioc_79"]  # judged, worst first; the rest after
    assert rows["hydromet"]["trend"] == [["2026-11-30", None], ["2026-12-01", 90.0], ["2026-12-02", 60.0]]
    assert (rows["hydromet"]["worst_feed"], rows["hydromet"]["worst_quality"]) == ("water_level", 60.0)
    assert rows["mof"]["score"] is None and rows["mof"]["worst_feed"] is None
    assert rows["ioc_79"]["label_en"] == "Ho Chi Minh City IOC" and rows["hydromet"]["label_vi"] == \
        "Cục Khí tượng Thủy văn"
    assert (snap["judged"], snap["below_80"], snap["mean_score"]) == (2, 1, 77.5)
    mine = wall_agencies(catalog, daily, contracts, days, frozenset({"79"}))
    assert [r["id"] for r in mine] == ["ioc_79"]  # a province page: its center only
