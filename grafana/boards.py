"""The boards, one function per panel: National wall, one board per category, Province, Feed explorer, Pipeline
health. Data links drill down: a province (map, alerts, tables) opens the Province board, a feed the Feed explorer,
each with its variables set from the clicked row and the time range kept.

Figures follow /overview's definitions (api/overview.py, api/series_sql.py): a series reports when its latest
reading is within 3 cadences; a feed is reporting / degraded / silent by its expected series; the 5-minute
figures count each reading once by event_id (readings_recent); the on-time rate is the share of dossiers
resolved with on_time=true. The "now" of a wall figure is the end of the dashboard's time range ($__toTime_ms),
which is now on a live wall. Time series over a range read the rollup that fits it (`tiered`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import dashboard as dash

from controlroom.board_uids import (
    AGENCIES_UID,
    COMPLIANCE_UID,
    EXPLORER_UID,
    INDICATORS_UID,
    PIPELINE_UID,
    PROVINCE_UID,
    WALL_UID,
)
from controlroom.catalog import (
    HEADLINE_FEEDS,
    NATIONAL,
    ON_TIME_DIM,
    ON_TIME_FEED,
    STALE_CADENCES,
    Catalog,
    Category,
    Feed,
)
from grafana import panels as P
from grafana.panels import Pos, Q

DB = "controlroom"  # Settings.clickhouse_database's default; the datasource's default database too

# --- the rollup that fits the range ------------------------------------------------------------------
RANGE_S = "(toUnixTimestamp($__toTime) - toUnixTimestamp($__fromTime))"
# (table, time column, bucket seconds, range above which it is used, range up to which it is used)
TIERS: list[tuple[str, str, int, int, int | None]] = [
    ("agg_1m", "window_start", 60, 0, 86_400),  # up to 1 day: 1-minute windows
    ("agg_1h", "bucket", 3_600, 86_400, 31 * 86_400),  # up to 31 days: hourly rollup
    ("agg_1d", "bucket", 86_400, 31 * 86_400, None),  # beyond: daily rollup
]


def tiered(template: str, order_by: str = "time") -> str:
    """One branch per rollup, each guarded by a constant condition on the range, so exactly one reads data.

    `template` uses {src} (table with FINAL), {t} (its time column), {tier} (the guard) and {width} (the
    bucket's seconds: a rate divides by greatest($__interval_s, {width})).
    """
    branches = []
    for table, col, width, lo, hi in TIERS:
        guard = f"{RANGE_S} > {lo}" + (f" AND {RANGE_S} <= {hi}" if hi is not None else "")
        branch = template
        for key, value in (("{src}", f"{DB}.{table} FINAL"), ("{t}", col), ("{tier}", guard), ("{width}", str(width))):
            branch = branch.replace(key, value)
        branches.append(branch)
    return "SELECT * FROM (\n" + "\nUNION ALL\n".join(branches) + f"\n) ORDER BY {order_by}"


def feed_value_expr(feed: Feed) -> str:
    """A feed's figure per bucket: the total of a counter, the mean reading of a gauge (as /series)."""
    return "sum(sum)" if feed.kind == "counter" else "sum(sum) / sum(count)"


# --- drill-down links ---------------------------------------------------------------------------------

def to_province(field: str = "province") -> P.DataLink:
    return P.board_link("Tỉnh · Province ${__data.fields." + field + "}", PROVINCE_UID,
                        province="${__data.fields." + field + "}")


def to_explorer(feed: str = "${__data.fields.feed}", province: str | None = None) -> P.DataLink:
    """The Feed explorer on `feed` (a row's field, or a fixed id), in `province` (a row's field, a variable) or all."""
    return P.board_link("Khám phá nguồn · Feed explorer", EXPLORER_UID, feed=feed,
                        province=province if province is not None else "$__all")


# --- National wall -----------------------------------------------------------------------------------

def _recent(feed_id: str) -> str:
    """Readings of a feed in the last 5 minutes before the range end, each once (as /overview)."""
    return (f"SELECT event_id, any(value) AS ev_value, any(dims_key) AS ev_dims_key FROM {DB}.readings_recent "
            f"WHERE feed = '{feed_id}' AND ts >= $__toTime_ms - INTERVAL 300 SECOND AND ts <= $__toTime_ms "
            "GROUP BY event_id")


def new_board(title: str, uid: str, tag: str, refresh: str, since: str) -> dash_b.Dashboard:
    """A read-only board of ours: tagged, refreshing, over [since, now] in the browser's time zone."""
    return (dash_b.Dashboard(title).uid(uid).tags(["controlroom", tag]).refresh(refresh).time(since, "now")
            .timezone("browser").readonly())


def headline_sql(feed: Feed) -> str:
    """A counter: its 5-minute total; a gauge: the mean of the latest values of its reporting series."""
    if feed.kind == "counter":
        return f"SELECT sum(ev_value) AS value FROM ({_recent(feed.id)})"
    stale_s = int(feed.cadence_s * STALE_CADENCES)
    return ("SELECT avg(lv) AS value FROM ("
            f"SELECT province, dims_key, max(last_ts) AS lt, argMaxMerge(last_value) AS lv FROM {DB}.readings_latest "
            f"WHERE feed = '{feed.id}' GROUP BY province, dims_key "
            f"HAVING lt >= $__toTime_ms - INTERVAL {stale_s} SECOND)")


def trend_sql(feed: Feed) -> str:
    """The sparkline under a tile: closed 1-minute windows of the last hour (as the live wall)."""
    return (f"SELECT window_start AS time, {feed_value_expr(feed)} AS trend FROM {DB}.agg_1m FINAL "
            f"WHERE feed = '{feed.id}' AND window_start >= $__toTime - INTERVAL 60 MINUTE "
            "AND window_start < $__toTime GROUP BY time ORDER BY time")


def category_tile(cat: Category, feed: Feed, pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.stat(f"{cat.name_vi} · {feed.name_vi}", [Q(headline_sql(feed)), Q(trend_sql(feed), time_series=True)],
                  pos, unit="short", text_mode=P.common.BigValueTextMode.VALUE_AND_NAME,
                  description=f"{cat.name_en}: {feed.name_en} ({feed.unit}). "
                              + ("Total of the last 5 minutes" if feed.kind == "counter"
                                 else "Mean of the latest value of each reporting series")
                              + "; the sparkline: 1-minute windows of the last hour.",
                  links=[to_explorer(feed.id)])


SEVERITY_RANK = "multiIf(severity = 'critical', 3, severity = 'warning', 2, severity = 'info', 1, 0)"


def province_map_sql() -> str:
    return ("SELECT p.code AS code, p.name_vi AS name, p.lat AS latitude, p.lon AS longitude, "
            "max(a.sev) AS severity, count(a.alert_id) AS firing "
            f"FROM {DB}.provinces AS p LEFT JOIN ("
            f"SELECT alert_id, province, {SEVERITY_RANK} AS sev FROM {DB}.alerts_current FINAL WHERE state = 'firing'"
            ") AS a ON a.province = p.code GROUP BY code, name, latitude, longitude ORDER BY code "
            "SETTINGS join_use_nulls = 0")


def province_map(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.province_map("34 tỉnh, thành · cảnh báo nặng nhất", Q(province_map_sql()), pos,
                          description="Each province at its coordinates (provinces table), coloured by its worst "
                                      "firing alert: green none, blue info, orange warning, red critical. A click "
                                      "opens the province's board.", links=[to_province("code")])


def firing_alerts_sql(where: str = "") -> str:
    """Firing alerts (and `where`, e.g. of the selected province), worst first."""
    return ("SELECT starts_at, severity, feed, province, summary_vi, summary_en, value, rule_id, alert_id, link "
            f"FROM {DB}.alerts_current FINAL WHERE state = 'firing' {where}"
            f"ORDER BY {SEVERITY_RANK} DESC, starts_at DESC LIMIT 500")


def firing_alerts(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Cảnh báo đang kích hoạt · Firing alerts", [Q(firing_alerts_sql())], pos,
                   description="alerts_current (FINAL) in state firing, worst first.",
                   links=[to_province(), to_explorer(province="${__data.fields.province}")])


def feed_health_sql(cat_order: list[str]) -> str:
    """Per feed: expected series (provinces × dims combinations), reporting ones, status 2/1/0."""
    order = ", ".join(f"'{c}'" for c in cat_order)
    return (
        "SELECT f.id AS feed, f.name_vi AS name, expected, reporting, "
        "multiIf(expected > 0 AND reporting >= expected, 2, reporting > 0, 1, 0) AS health FROM ("
        "SELECT id, name_vi, category, if(scope = 'national', 1, "
        f"(SELECT count() FROM {DB}.provinces)) * if(empty(mapKeys(dims)), 1, "
        "toUInt64(arrayProduct(arrayMap(x -> length(x), mapValues(dims))))) "
        "AS expected, length(mapKeys(dims)) AS n_dims, "
        f"indexOf([{order}], category) AS cat_rank FROM {DB}.feeds) AS f "
        "LEFT JOIN ("
        "SELECT l.feed AS feed, count() AS reporting FROM ("
        f"SELECT feed, province, dims_key, max(last_ts) AS lt FROM {DB}.readings_latest "
        "GROUP BY feed, province, dims_key) AS l "
        f"INNER JOIN {DB}.feeds AS c ON c.id = l.feed "
        "WHERE l.lt >= $__toTime_ms - toIntervalMillisecond(toInt64(c.cadence_s * 1000 * "
        f"{STALE_CADENCES})) "
        f"AND if(c.scope = 'national', l.province = '{NATIONAL}', l.province IN (SELECT code FROM {DB}.provinces)) "
        "AND if(length(mapKeys(c.dims)) = 0, l.dims_key = '', "
        "length(splitByChar(',', l.dims_key)) = length(mapKeys(c.dims))) "
        "GROUP BY l.feed) AS r ON r.feed = f.id "
        "ORDER BY f.cat_rank, feed SETTINGS join_use_nulls = 0")


def feed_health(pos: Pos, cat_order: list[str]) -> cogbuilder.Builder[dash.Panel]:
    return P.stat("Tình trạng 25 nguồn · Feed health", [Q(feed_health_sql(cat_order))], pos,
                  rows=True, text_mode=P.common.BigValueTextMode.VALUE_AND_NAME,
                  thresholds=[("red", None), ("orange", 1.0), ("green", 2.0)],
                  mappings=P.value_map([("2", "reporting", "green"), ("1", "degraded", "orange"),
                                        ("0", "silent", "red")]),
                  description="reporting: every expected series (provinces × dims) sent within 3 cadences; "
                              "degraded: some; silent: none (as /overview's feed status).",
                  links=[to_explorer()])


def on_time_sql() -> str:
    return (f"SELECT round(100 * sumIf(ev_value, has(splitByChar(',', ev_dims_key), '{ON_TIME_DIM}')) "
            f"/ sum(ev_value), 2) AS on_time_rate_pct FROM ({_recent(ON_TIME_FEED)}) HAVING sum(ev_value) > 0")


def on_time_rate(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.stat("Dịch vụ công đúng hạn · On-time rate", [Q(on_time_sql())], pos, unit="percent", decimals=1,
                  thresholds=[("red", None), ("orange", 80.0), ("green", 90.0)],
                  description="Dossiers resolved on time among all resolved in the last 5 minutes "
                              "(dvc_dossiers_resolved, on_time=true), as /overview's public_services.")


def national_wall(catalog: Catalog) -> dash_b.Dashboard:
    cats = list(catalog.categories.values())
    board = (dash_b.Dashboard("Bảng điều hành quốc gia · National wall").uid(WALL_UID)
             .tags(["controlroom", "wall"]).refresh("5s").time("now-15m", "now").timezone("browser")
             .timepicker(dash_b.TimePicker().refresh_intervals(["5s", "10s", "30s", "1m"]).hidden(True))
             .readonly())
    # 1920×1080 in kiosk mode: 24 columns × ~30 px rows; tiles on top, map left, alerts and health right
    for i, cat in enumerate(cats):
        board = board.with_panel(category_tile(cat, catalog.feeds[HEADLINE_FEEDS[cat.id]],
                                               Pos(x=(i * 24) // len(cats), y=0, w=24 // len(cats) + (i % 2), h=5)))
    board = board.with_panel(province_map(Pos(0, 5, 8, 26)))
    board = board.with_panel(firing_alerts(Pos(8, 5, 16, 11)))
    board = board.with_panel(feed_health(Pos(8, 16, 12, 15), [c.id for c in cats]))
    return board.with_panel(on_time_rate(Pos(20, 16, 4, 15)))


# --- one board per category --------------------------------------------------------------------------

def feed_series_sql(feed: Feed) -> str:
    return tiered(f"SELECT $__timeInterval({{t}}) AS time, {feed_value_expr(feed)} AS value FROM {{src}} "
                  f"WHERE $__timeFilter({{t}}) AND {{tier}} AND feed = '{feed.id}' GROUP BY time")


def feed_series(feed: Feed, pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    what = "total per interval" if feed.kind == "counter" else "mean reading per interval"
    return P.timeseries(f"{feed.name_vi} · {feed.name_en}", [Q(feed_series_sql(feed), time_series=True)], pos,
                        description=f"{feed.source}; {feed.unit}, {what}. Reads agg_1m up to 1 day, agg_1h up to "
                                    "31 days, agg_1d beyond.")


def feed_provinces_sql(feed: Feed) -> str:
    return tiered(f"SELECT province, sum(count) AS readings, sum(sum) AS total, min(min) AS lo, max(max) AS hi "
                  f"FROM {{src}} WHERE $__timeFilter({{t}}) AND {{tier}} AND feed = '{feed.id}' GROUP BY province",
                  order_by="province")


def feed_provinces(feed: Feed, pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table(f"{feed.name_vi} theo tỉnh · by province", [Q(feed_provinces_sql(feed))], pos,
                   description="Readings, total, min and max per province over the range (rollup by range).",
                   links=[to_province(), to_explorer(feed.id, "${__data.fields.province}")])


# --- incident annotations (issue 13) -------------------------------------------------------------------

INCIDENT_ANNOTATED = ("opened", "acknowledged", "resolved")  # the lifecycle; joins and comments would be noise
INCIDENT_FEEDS = "arrayMap(m -> JSONExtractString(m, 'feed'), JSONExtractArrayRaw(members))"


def incident_annotations_sql(incident_filter: str) -> str:
    """Lifecycle events of the incidents `incident_filter` selects (a condition on incidents_current: an incident
    is judged by all its member alerts, so its `opened` shows even where a feed joined it later)."""
    events = ", ".join(f"'{e}'" for e in INCIDENT_ANNOTATED)
    return ("SELECT event_at AS time, concat(event, ' · ', title_en, if(by != '', concat(' · ', by), ''), "
            "' · ', incident_id) AS text, [type, province, severity, event] AS tags "
            f"FROM {DB}.incident_events FINAL WHERE $__timeFilter(event_at) AND event IN ({events}) "
            f"AND incident_id IN (SELECT incident_id FROM {DB}.incidents_current FINAL WHERE {incident_filter}) "
            "ORDER BY time")


def category_incidents_sql(feeds: list[Feed]) -> str:
    ids = ", ".join(f"'{f.id}'" for f in feeds)
    return incident_annotations_sql(f"hasAny({INCIDENT_FEEDS}, [{ids}])")


def explorer_incidents_sql() -> str:
    return incident_annotations_sql(f"has({INCIDENT_FEEDS}, '${{feed}}') "
                                    "AND $__conditionalAll(province IN (${province}), $province)")


def category_board(catalog: Catalog, cat: Category) -> dash_b.Dashboard:
    board = new_board(f"{cat.name_vi} · {cat.name_en}", f"controlroom-cat-{cat.id.replace('_', '-')}", "category",
                      "30s", "now-6h")
    feeds = [f for f in catalog.feeds.values() if f.category == cat.id]
    board = board.annotation(P.annotation("Incidents", category_incidents_sql(feeds), "purple"))
    for i, feed in enumerate(feeds):
        board = board.with_panel(feed_series(feed, Pos(0, i * 9, 16, 9)))
        board = board.with_panel(feed_provinces(feed, Pos(16, i * 9, 8, 9)))
    return board


# --- Province (drill-down from the national wall and the category boards) ------------------------------

IN_PROVINCE = "province IN (${province})"


def province_feeds_sql() -> str:
    return tiered("SELECT feed, sum(count) AS readings, sum(sum) AS total, sum(sum) / sum(count) AS mean, "
                  "min(min) AS lo, max(max) AS hi FROM {src} "
                  f"WHERE $__timeFilter({{t}}) AND {{tier}} AND {IN_PROVINCE} GROUP BY feed", order_by="feed")


def province_feeds(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Các nguồn của tỉnh · Feeds of the province", [Q(province_feeds_sql())], pos,
                   description="Per feed over the range: readings, total, mean, min and max (rollup by range). "
                               "A click opens the feed in the explorer, in this province.",
                   links=[to_explorer(province="${province}")])


def province_readings_sql() -> str:
    return tiered("SELECT $__timeInterval({t}) AS time, feed, sum(count) AS readings FROM {src} "
                  f"WHERE $__timeFilter({{t}}) AND {{tier}} AND {IN_PROVINCE} GROUP BY time, feed")


def province_readings(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Số bản tin theo nguồn · Readings per feed", [Q(province_readings_sql(), time_series=True)],
                        pos, stack=True, description="Readings per interval and feed in the province.")


def province_alerts(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Cảnh báo đang kích hoạt · Firing alerts", [Q(firing_alerts_sql(f"AND {IN_PROVINCE} "))], pos,
                   description="The province's firing alerts, worst first.",
                   links=[to_explorer(province="${__data.fields.province}")])


def province_communes_sql() -> str:
    """Per place feed and commune: the readings over the range that named a commune, each once (readings.commune,
    names from the communes reference table)."""
    return ("SELECT ev_feed AS feed, ev_commune AS commune, c.name AS name, count() AS readings, "
            "sum(ev_value) AS total FROM ("
            "SELECT event_id, any(feed) AS ev_feed, any(commune) AS ev_commune, any(value) AS ev_value "
            f"FROM {DB}.readings WHERE $__timeFilter(ts) AND {IN_PROVINCE} AND commune != '' "
            f"AND feed IN (SELECT id FROM {DB}.feeds WHERE communes = 1) GROUP BY event_id"
            f") AS r LEFT JOIN {DB}.communes AS c ON c.code = r.ev_commune "
            "GROUP BY feed, commune, name ORDER BY feed, total DESC, commune LIMIT 1000")


def province_communes(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Theo xã, phường · By commune", [Q(province_communes_sql())], pos,
                   description="Where inside the province: readings of the feeds that carry a commune (citizen "
                               "reports, rescue incidents, hotline calls, water level), per commune, busiest first.",
                   links=[to_explorer(province="${province}")])


def province_board() -> dash_b.Dashboard:
    return (new_board("Tỉnh, thành · Province", PROVINCE_UID, "province", "30s", "now-6h")
            # multi-value, as the explorer's: the plugin quotes a multi-value variable's values ('01'), not a
            # single-value one (01, a number); a data link sets one province
            .with_variable(P.query_variable("province", "Province", f"SELECT code FROM {DB}.provinces ORDER BY code",
                                            multi=True, include_all=False))
            .with_panel(province_feeds(Pos(0, 0, 12, 14)))
            .with_panel(province_alerts(Pos(12, 0, 12, 14)))
            .with_panel(province_readings(Pos(0, 14, 12, 12)))
            .with_panel(province_communes(Pos(12, 14, 12, 12))))


# --- Feed explorer -----------------------------------------------------------------------------------

EXPLORER_FILTER = ("feed = '${feed}' AND $__conditionalAll(province IN (${province}), $province) "
                   "AND $__conditionalAll(dims_key IN (${dims}), $dims)")


def explorer_raw_sql() -> str:
    # aliases never reuse a column name: ClickHouse would read the alias (an aggregate) in WHERE
    return ("SELECT ev_ts AS time, concat(ev_province, ' ', ev_dims_key) AS series, ev_value AS value FROM ("
            "SELECT event_id, any(ts) AS ev_ts, any(value) AS ev_value, any(province) AS ev_province, "
            f"any(dims_key) AS ev_dims_key FROM {DB}.readings WHERE $__timeFilter(ts) AND {EXPLORER_FILTER} "
            "GROUP BY event_id) ORDER BY time LIMIT 20000")


def explorer_raw(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Số đo gốc · Raw readings", [Q(explorer_raw_sql(), time_series=True)], pos,
                        description="Every reading (deduplicated by event_id) of the selected series; up to 20,000.")


def explorer_agg_sql() -> str:
    return tiered("SELECT $__timeInterval({t}) AS time, sum(sum) / sum(count) AS mean, min(min) AS lo, "
                  "max(max) AS hi, sum(sum) AS total, sum(count) AS readings FROM {src} "
                  f"WHERE $__timeFilter({{t}}) AND {{tier}} AND {EXPLORER_FILTER} GROUP BY time")


def explorer_agg(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Tổng hợp · Aggregated", [Q(explorer_agg_sql(), time_series=True)], pos,
                        description="Mean, min, max, total and readings per interval from agg_1m / agg_1h / agg_1d "
                                    "(by range); alert events of the series are annotations.")


def explorer_alerts_sql() -> str:
    return ("SELECT event_at AS time, concat(event, ' · ', severity, ' · ', summary_en) AS text, "
            "[rule_id, severity, province] AS tags "
            f"FROM {DB}.alert_events WHERE $__timeFilter(event_at) AND {EXPLORER_FILTER} ORDER BY time")


def feed_explorer() -> dash_b.Dashboard:
    return (new_board("Khám phá nguồn · Feed explorer", EXPLORER_UID, "explorer", "30s", "now-6h")
            .with_variable(P.query_variable("feed", "Feed", f"SELECT id FROM {DB}.feeds ORDER BY id",
                                            multi=False, include_all=False))
            .with_variable(P.query_variable("province", "Province", f"SELECT code FROM {DB}.provinces ORDER BY code",
                                            multi=True, include_all=True))
            .with_variable(P.query_variable("dims", "Dims", f"SELECT DISTINCT dims_key FROM {DB}.readings_latest "
                                            "WHERE feed = '${feed}' ORDER BY dims_key", multi=True, include_all=True))
            .annotation(P.annotation("Alerts", explorer_alerts_sql(), "red"))
            .annotation(P.annotation("Incidents", explorer_incidents_sql(), "purple"))
            .with_panel(explorer_raw(Pos(0, 0, 24, 12)))
            .with_panel(explorer_agg(Pos(0, 12, 24, 12))))


# --- Pipeline health ---------------------------------------------------------------------------------

def readings_rate_sql() -> str:
    return tiered("SELECT toStartOfInterval(toDateTime({t}), INTERVAL greatest($__interval_s, {width}) second) "
                  "AS time, feed, sum(count) / greatest($__interval_s, {width}) AS per_second FROM {src} "
                  "WHERE $__timeFilter({t}) AND {tier} GROUP BY time, feed")


def readings_rate(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Readings/s per feed", [Q(readings_rate_sql(), time_series=True)], pos, unit="reqps",
                        stack=True, description="Aggregated readings per second (windows' count over the bucket).")


def dead_letters_sql() -> str:
    return (f"SELECT $__timeInterval(received_at) AS time, feed, uniqExact(dlq_id) AS dead_letters "
            f"FROM {DB}.dead_letters WHERE $__timeFilter(received_at) GROUP BY time, feed ORDER BY time")


def dead_letters(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Dead letters per feed", [Q(dead_letters_sql(), time_series=True)], pos, stack=True,
                        description="Rejected readings, each once by dlq_id (per agency: controlroom/data/"
                                    "agencies.yaml maps feeds to the bodies that supply them; readings and "
                                    "aggregates carry an agency column, dead letters only their reason).")


def dead_letter_reasons_sql() -> str:
    return (f"SELECT feed, reason, field, uniqExact(dlq_id) AS dead_letters FROM {DB}.dead_letters "
            "WHERE $__timeFilter(received_at) GROUP BY feed, reason, field ORDER BY dead_letters DESC LIMIT 200")


def dead_letter_reasons(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Dead letters by reason", [Q(dead_letter_reasons_sql())], pos)


def late_by_status_sql(status: str, measure: str, alias: str) -> str:
    """Late readings of one status (`amended`, `too_late`) per feed and interval, counted by `measure`."""
    return (f"SELECT $__timeInterval(detected_at) AS time, feed, {measure} AS {alias} "
            f"FROM {DB}.late_readings WHERE $__timeFilter(detected_at) AND status = '{status}' "
            "GROUP BY time, feed ORDER BY time")


def amended_windows(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    sql = late_by_status_sql("amended", "uniqExact(province, dims_key, toStartOfMinute(ts))", "amended_windows")
    return P.timeseries("Amended windows per feed", [Q(sql, time_series=True)], pos, stack=True,
                        description="Closed 1-minute windows changed by a late reading within the amend horizon "
                                    "(AMEND_HORIZON_S): recomputed from the stored readings, rollups follow.")


def too_late(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    sql = late_by_status_sql("too_late", "uniqExact(event_id)", "too_late")
    return P.timeseries("Too-late readings per feed", [Q(sql, time_series=True)], pos, stack=True,
                        description="Readings older than the amend horizon: stored raw, not aggregated until "
                                    "`controlroom backfill` recomputes their range.")


def sink_latency_sql() -> str:
    return ("SELECT $__timeInterval(ingested_at) AS time, "
            "quantile(0.5)(dateDiff('millisecond', ts, ingested_at)) / 1000 AS p50_s, "
            "quantile(0.99)(dateDiff('millisecond', ts, ingested_at)) / 1000 AS p99_s, "
            "max(dateDiff('millisecond', ts, ingested_at)) / 1000 AS max_s "
            f"FROM {DB}.readings WHERE $__timeFilter(ingested_at) AND $__timeFilter(ts) GROUP BY time ORDER BY time")


def sink_latency(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Sink latency (ingested_at − ts)", [Q(sink_latency_sql(), time_series=True)], pos, unit="s",
                        description="From a reading's own timestamp to its insert into ClickHouse.")


def alerts_by_state_sql() -> str:
    return (f"SELECT state, severity, count() AS alerts FROM {DB}.alerts_current FINAL "
            f"GROUP BY state, severity ORDER BY state, {SEVERITY_RANK} DESC")


def alerts_by_state(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Alerts by state", [Q(alerts_by_state_sql())], pos,
                   description="Every alert's latest state (alerts_current FINAL): pending, firing, resolved.")


def deliveries_sql() -> str:
    return (f"SELECT $__timeInterval(attempted_at) AS time, status, count() AS deliveries FROM {DB}.delivery_attempts "
            "WHERE $__timeFilter(attempted_at) GROUP BY time, status ORDER BY time")


def deliveries(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Notification deliveries by status", [Q(deliveries_sql(), time_series=True)], pos,
                        stack=True, description="Every attempt of the notifier (delivery_attempts: no target).")


def freshness_sql() -> str:
    return ("SELECT feed, dateDiff('millisecond', max(last_ts), $__toTime_ms) / 1000 AS behind_s "
            f"FROM {DB}.readings_latest GROUP BY feed ORDER BY behind_s DESC")


def freshness(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Freshness per feed", [Q(freshness_sql())], pos,
                   description="How far each feed's newest stored reading is behind the range end: grows when "
                               "an agency stops sending or a consumer lags (the lag itself: Consumer lag, from "
                               "Prometheus).")


# Prometheus (the services' /metrics): what ClickHouse cannot know, the consumers' own view of Kafka

def consumer_lag(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.prom_timeseries("Consumer lag (Prometheus)", [
        P.PromQ("sum by (group) (controlroom_consumer_lag)", "{{group}}"),
        P.PromQ("topk(3, controlroom_consumer_lag)", "{{group}} {{topic}}[{{partition}}]"),
    ], pos, description="Records not yet read, per consumer (worker, sinks, alerter, notifier): each partition's "
                        "high watermark minus the consumer's position, as the consumer itself sees them; and the "
                        "three partitions furthest behind. A line that keeps growing: scale the workers (partitions "
                        "first) or look at the consumer's log.")


def per_second(series: str, legend: str) -> P.PromQ:
    return P.PromQ(f"sum(rate({series}[$__rate_interval]))", legend)


def p99(histogram: str, by: str, legend: str) -> P.PromQ:
    return P.PromQ(f"histogram_quantile(0.99, sum by (le{by}) (rate({histogram}_bucket[$__rate_interval])))", legend)


def throughput(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    flows = [per_second("controlroom_readings_in_total", "worker in"),
             per_second("controlroom_readings_out_total", "windowed"),
             per_second("controlroom_dead_letters_total", "dead letters"),
             per_second('controlroom_sink_rows_out_total{table="readings"}', "stored")]
    return P.prom_timeseries("Throughput (Prometheus)", flows, pos, unit="reqps",
                             description="Readings per second read by the workers, added to windows, dead-lettered, "
                                         "and stored by the sinks (per feed: controlroom_readings_in_total{feed}).")


def latencies(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    tails = [p99("controlroom_batch_duration_seconds", ", service", "{{service}} batch"),
             p99("controlroom_window_close_duration_seconds", "", "window close")]
    return P.prom_timeseries("Batch and window-close latency p99 (Prometheus)", tails, pos, unit="s",
                             description="99th percentile of a worker micro-batch, a sink flush (inserts and "
                                         "offset commit) and a window-closing pass.")


def pipeline_health() -> dash_b.Dashboard:
    return (new_board("Sức khỏe đường ống · Pipeline health", PIPELINE_UID, "pipeline", "10s", "now-1h")
            .with_panel(consumer_lag(Pos(0, 0, 8, 9)))
            .with_panel(throughput(Pos(8, 0, 8, 9)))
            .with_panel(latencies(Pos(16, 0, 8, 9)))
            .with_panel(readings_rate(Pos(0, 9, 12, 9)))
            .with_panel(sink_latency(Pos(12, 9, 12, 9)))
            .with_panel(dead_letters(Pos(0, 18, 12, 9)))
            .with_panel(amended_windows(Pos(12, 18, 6, 9)))
            .with_panel(too_late(Pos(18, 18, 6, 9)))
            .with_panel(dead_letter_reasons(Pos(0, 27, 12, 9)))
            .with_panel(freshness(Pos(12, 27, 12, 9)))
            .with_panel(alerts_by_state(Pos(0, 36, 8, 8)))
            .with_panel(deliveries(Pos(8, 36, 16, 8))))


# --- Indicators and reporting compliance (issue 16) ----------------------------------------------------------

# A derived indicator per Vietnamese month from the hourly rollup, as GET /indicators/{id} computes it: the feed of
# the indicator (the `indicators` reference table) with its pinned dimension; sum, mean of every reading, or the
# last reading, by its aggregation.
INDICATOR_MONTHS = (
    "SELECT toDateTime(toStartOfMonth(a.bucket, 'Asia/Ho_Chi_Minh'), 'Asia/Ho_Chi_Minh') AS time, {group}"
    "multiIf(any(i.aggregation) = 'sum', sum(a.sum), any(i.aggregation) = 'average', sum(a.sum) / sum(a.count), "
    "argMax(a.last, a.last_ts)) AS value, any(i.aggregation) AS agg "
    f"FROM {DB}.agg_1h_final AS a INNER JOIN {DB}.indicators AS i ON a.feed = i.feed "
    "WHERE i.id = '${{indicator}}' AND (i.dim_key = '' OR a.dims[i.dim_key] = i.dim_value) "
    "AND $__timeFilter(a.bucket) GROUP BY {keys}")
CURRENT_TARGETS = ("SELECT year, province, argMax(value, (version, set_at)) AS target "
                   f"FROM {DB}.indicator_targets FINAL WHERE indicator = '${{indicator}}' GROUP BY year, province")


def indicator_trend_sql() -> str:
    """The national value per month and the plan line: a summed indicator's yearly target spread over 12 months,
    any other's target as it is; no target, no line (NULL, not 0)."""
    months = INDICATOR_MONTHS.format(group="", keys="time")
    return (f"SELECT m.time AS time, m.value AS value, if(m.agg = 'sum', t.target / 12, t.target) AS plan "
            f"FROM ({months}) AS m LEFT JOIN ({CURRENT_TARGETS}) AS t "
            "ON t.year = toYear(m.time, 'Asia/Ho_Chi_Minh') AND t.province = '00' "
            "ORDER BY time SETTINGS join_use_nulls = 1")


def indicator_trend(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Cả nước theo tháng · National, per month", [Q(indicator_trend_sql(), time_series=True)],
                        pos, description="The indicator per Vietnamese month, from the hourly aggregates (as GET "
                                         "/indicators/{id}), and the plan: the national yearly target (÷ 12 for a "
                                         "summed indicator).")


def indicator_ranking_sql() -> str:
    months = INDICATOR_MONTHS.format(group="a.province AS prov, ", keys="time, prov")
    return (f"SELECT m.prov AS province, p.name_vi AS name, "
            "if(any(m.agg) = 'sum', sum(m.value), avg(m.value)) AS actual, any(t.target) AS target, "
            "round(100 * actual / any(t.target), 1) AS pct_of_plan "
            f"FROM ({months}) AS m LEFT JOIN {DB}.provinces AS p ON p.code = m.prov "
            f"LEFT JOIN ({CURRENT_TARGETS}) AS t ON t.province = m.prov "
            "AND t.year = toYear(now('Asia/Ho_Chi_Minh')) "
            "GROUP BY province, name ORDER BY pct_of_plan DESC NULLS LAST, actual DESC LIMIT 34 "
            "SETTINGS join_use_nulls = 1")


def indicator_ranking(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Xếp hạng tỉnh · Provinces ranked", [Q(indicator_ranking_sql())], pos,
                   description="Each province over the range (a summed indicator: its total; else the mean of its "
                               "months), with this year's target and the share reached; ranked by that share where "
                               "a target exists, else by the figure.",
                   links=[to_province()])


def indicators_board() -> dash_b.Dashboard:
    return (new_board("Chỉ tiêu · Indicators", INDICATORS_UID, "indicators", "1m", "now-1y")
            .with_variable(P.query_variable("indicator", "Indicator", f"SELECT id FROM {DB}.indicators "
                                            "WHERE source = 'feed' ORDER BY id", multi=False, include_all=False))
            .with_panel(indicator_trend(Pos(0, 0, 24, 12)))
            .with_panel(indicator_ranking(Pos(0, 12, 24, 14))))


def compliance_overview_sql() -> str:
    # expected: the 34 provinces and the nation (the units of every form)
    return ("SELECT form, period, uniqExactIf(unit, status = 'submitted') AS submitted, "
            "uniqExactIf(unit, status = 'submitted' AND on_time = 1) AS on_time, "
            f"(SELECT count() FROM {DB}.provinces) + 1 AS expected, expected - submitted AS missing, "
            "round(100 * submitted / expected, 1) AS reporting_rate "
            f"FROM {DB}.report_submissions FINAL WHERE $__timeFilter(submitted_at) "
            "GROUP BY form, period ORDER BY period DESC, form LIMIT 500")


def compliance_overview(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Tình hình gửi báo cáo · Reporting rates", [Q(compliance_overview_sql())], pos,
                   description="Per form and period submitted in the range: units that submitted (drafts do not "
                               "count), on time, missing, and the reporting rate (as GET /reports/compliance).")


def compliance_units_sql() -> str:
    return ("SELECT unit, period, max(revision) AS revisions, maxIf(on_time, status = 'submitted') AS on_time, "
            "countIf(status = 'draft') AS drafts, max(submitted_at) AS last_at "
            f"FROM {DB}.report_submissions FINAL WHERE form = '${{form}}' AND $__timeFilter(submitted_at) "
            "GROUP BY unit, period ORDER BY period DESC, unit LIMIT 1000")


def compliance_units(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Đơn vị gửi báo cáo · Units of the form", [Q(compliance_units_sql())], pos,
                   description="Who submitted the selected form, per period: revisions, whether on time, drafts.")


def review_steps_sql() -> str:
    return ("SELECT step, count() AS steps FROM " + DB + ".report_reviews FINAL "
            "WHERE form = '${form}' AND $__timeFilter(reviewed_at) GROUP BY step ORDER BY step")


def review_steps(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Duyệt báo cáo · Review steps", [Q(review_steps_sql())], pos,
                   description="Approvals (the province's center), acceptances (the national center), rejections.")


def compliance_board() -> dash_b.Dashboard:
    return (new_board("Chế độ báo cáo · Reporting compliance", COMPLIANCE_UID, "reports", "1m", "now-90d")
            .with_variable(P.query_variable("form", "Form", f"SELECT DISTINCT report FROM {DB}.indicators "
                                            "WHERE report != '' ORDER BY report", multi=False, include_all=False))
            .with_panel(compliance_overview(Pos(0, 0, 24, 12)))
            .with_panel(compliance_units(Pos(0, 12, 16, 12)))
            .with_panel(review_steps(Pos(16, 12, 8, 12))))


# --- Agencies: the connected bodies' contracts and quality score (migration 0017) ---------------------------

# the measures of contract_hourly over a range, in percent; aliases never reuse a column name (ClickHouse would read
# the alias, an aggregate, inside another aggregate)
AGENCY_MEASURES = ("round(avg(quality), 1) AS score, " + ", ".join(
    f"round(100 * avg({m}), 1) AS {m}_pct" for m in ("completeness", "timeliness", "validity", "volume")))


def agency_ranking_sql() -> str:
    """Per body over the range: the mean quality of its contract-hours (the daily score's formula over the range),
    the four measures and its worst contract-hour's feed; worst first."""
    return (f"SELECT agency, {AGENCY_MEASURES}, count() AS contract_hours, argMin(feed, quality) AS worst_feed "
            f"FROM {DB}.contract_hourly WHERE $__timeFilter(hour) AND quality IS NOT NULL "
            "GROUP BY agency ORDER BY score ASC, agency LIMIT 200")


def agency_ranking(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Xếp hạng cơ quan · Agencies ranked", [Q(agency_ranking_sql())], pos,
                   description="Each connected body over the range: its quality score (mean quality 0–100 of its "
                               "contract-hours: completeness 0.4, timeliness, validity and volume 0.2 each, as GET "
                               "/agencies), the four measures, its worst contract; worst first. A click drills down.",
                   links=[P.board_link("Cơ quan · Agency ${__data.fields.agency}", AGENCIES_UID,
                                       agency="${__data.fields.agency}")])


def agency_daily_sql() -> str:
    return (f"SELECT toDateTime(day) AS time, score FROM {DB}.agency_scores_daily "
            "WHERE agency = '${agency}' AND $__timeFilter(toDateTime(day)) ORDER BY time")


def agency_daily(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Điểm theo ngày · Daily score", [Q(agency_daily_sql(), time_series=True)], pos,
                        description="The selected body's daily quality score (Vietnamese days), as GET "
                                    "/agencies/{id} returns its history.")


def agency_contracts_sql() -> str:
    return (f"SELECT feed, {AGENCY_MEASURES}, sum(readings) AS readings_in, sum(late) AS late_in, "
            f"sum(dead) AS dead_in, count() AS hours FROM {DB}.contract_hourly "
            "WHERE agency = '${agency}' AND $__timeFilter(hour) AND quality IS NOT NULL GROUP BY feed ORDER BY score")


def agency_contracts(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.table("Các hợp đồng · Contracts of the agency", [Q(agency_contracts_sql())], pos,
                   description="The selected body's feed contracts over the range: score and measures, readings, "
                               "late readings and dead letters. A click opens the feed in the explorer.",
                   links=[to_explorer()])


def agency_hourly_sql() -> str:
    return (f"SELECT hour AS time, feed, quality FROM {DB}.contract_hourly "
            "WHERE agency = '${agency}' AND $__timeFilter(hour) ORDER BY time")


def agency_hourly(pos: Pos) -> cogbuilder.Builder[dash.Panel]:
    return P.timeseries("Chất lượng theo giờ · Quality per hour", [Q(agency_hourly_sql(), time_series=True)], pos,
                        description="Each contract's quality per received hour (0–100): a silent hour is 0.")


def agencies_board() -> dash_b.Dashboard:
    return (new_board("Cơ quan cung cấp · Agencies", AGENCIES_UID, "agencies", "5m", "now-7d")
            .with_variable(P.query_variable("agency", "Agency", f"SELECT DISTINCT agency FROM {DB}.contracts "
                                            "ORDER BY agency", multi=False, include_all=False))
            .with_panel(agency_ranking(Pos(0, 0, 24, 12)))
            .with_panel(agency_daily(Pos(0, 12, 8, 10)))
            .with_panel(agency_hourly(Pos(8, 12, 16, 10)))
            .with_panel(agency_contracts(Pos(0, 22, 24, 10))))


# --- all boards --------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Board:
    file: str
    build: Callable[[], dash_b.Dashboard]


def all_boards(catalog: Catalog) -> list[Board]:
    boards = [Board("national-wall", lambda: national_wall(catalog)), Board("province", province_board),
              Board("feed-explorer", feed_explorer), Board("pipeline-health", pipeline_health),
              Board("indicators", indicators_board), Board("reporting-compliance", compliance_board),
              Board("agencies", agencies_board)]
    for cat in catalog.categories.values():
        boards.append(Board(f"category-{cat.id.replace('_', '-')}", functools.partial(category_board, catalog, cat)))
    return boards
