"""Shared panel factories over grafana-foundation-sdk, and the ClickHouse query type the SDK does not ship.

Every panel reads the provisioned ClickHouse datasource (fixed uid) with a raw SQL query written for the
plugin's macros (grafana/macros.py expands them the same way in the tests), except the pipeline's own health
(consumer lag, throughput, latencies): PromQL on the provisioned Prometheus datasource. A factory takes the title, the
queries and the grid position; the boards (grafana/boards.py) hold one function per panel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import geomap as geomap_b
from grafana_foundation_sdk.builders import prometheus as prom_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import text as text_b
from grafana_foundation_sdk.builders import timeseries as timeseries_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash
from grafana_foundation_sdk.models import text as text_m

from grafana.layout import DATASOURCE_UID, PLUGIN_TYPE, PROMETHEUS_UID

DS = dash.DataSourceRef(type_val=PLUGIN_TYPE, uid=DATASOURCE_UID)
PROM_DS = dash.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)

FORMAT_TABLE, FORMAT_TIME_SERIES = 1, 0  # the plugin's Format enum (src/types/queryBuilder.ts)

# What a panel type needs from its query's columns (checked by tests/integration/test_grafana_queries.py)
NEEDS: dict[str, str] = {
    "timeseries": "a `time` column and at least one numeric column",
    "stat": "at least one numeric column",
    "table": "at least one column",
    "geomap": "`latitude` and `longitude` (numbers), the province `code` and a numeric `severity`",
}

SEVERITY_COLORS = [("green", None), ("blue", 1.0), ("orange", 2.0), ("red", 3.0)]  # ok, info, warning, critical


class ClickHouseQuery(cogvariants.Dataquery):
    """One target of grafana-clickhouse-datasource in SQL-editor mode."""

    def __init__(self, ref_id: str, raw_sql: str, fmt: int) -> None:
        self.ref_id = ref_id
        self.raw_sql = raw_sql
        self.format = fmt

    def to_json(self) -> dict[str, Any]:
        return {"refId": self.ref_id, "datasource": {"type": PLUGIN_TYPE, "uid": DATASOURCE_UID},
                "editorType": "sql", "queryType": "timeseries" if self.format == FORMAT_TIME_SERIES else "table",
                "format": self.format, "rawSql": self.raw_sql, "pluginVersion": "4.0.0"}


@dataclass(frozen=True, slots=True)
class Q:
    """A panel query: the SQL and whether Grafana should read it as a time series (long → wide by labels)."""

    sql: str
    time_series: bool = False


class _Target(cogbuilder.Builder[cogvariants.Dataquery]):
    def __init__(self, ref_id: str, q: Q) -> None:
        self._q = ClickHouseQuery(ref_id, q.sql, FORMAT_TIME_SERIES if q.time_series else FORMAT_TABLE)

    def build(self) -> ClickHouseQuery:
        return self._q


def _targets(queries: list[Q]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    return [_Target(chr(ord("A") + i), q) for i, q in enumerate(queries)]


@dataclass(frozen=True, slots=True)
class PromQ:
    """A PromQL query of a panel and its legend (e.g. `{{group}}`)."""

    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class Pos:
    x: int
    y: int
    w: int
    h: int

    def grid(self) -> dash.GridPos:
        return dash.GridPos(h=self.h, w=self.w, x=self.x, y=self.y)


class DataLink(cogbuilder.Builder[dash.DashboardLink]):
    """A data link (field config `links`): a click on a value opens `url`. Grafana's data link is {title, url,
    targetBlank}; the SDK types it as a DashboardLink, whose other fields a data link does not have."""

    def __init__(self, title: str, url: str) -> None:
        self._model = dash.DashboardLink(title=title, url=url)
        self._model.to_json = lambda: {"title": title, "url": url, "targetBlank": False}  # type: ignore[method-assign]

    def build(self) -> dash.DashboardLink:
        return self._model


def board_link(title: str, uid: str, **variables: str) -> DataLink:
    """A data link to another board carrying its variables and the time range: `var-<name>=<value>` for a field of
    the clicked row (`${__data.fields.code}`) or a fixed value; this board's own variable of the same name
    (`${province}`) goes as `${province:queryparam}`, which carries every value of a multi-value variable."""
    params = "&".join(f"${{{k}:queryparam}}" if v == f"${{{k}}}" else f"var-{k}={v}" for k, v in variables.items())
    return DataLink(title, f"/d/{uid}?{params}&${{__url_time_range}}")


Links = list[DataLink] | None


def _thresholds(steps: list[tuple[str, float | None]]) -> dash_b.ThresholdsConfig:
    return (dash_b.ThresholdsConfig().mode(dash.ThresholdsMode.ABSOLUTE)
            .steps([dash.Threshold(value=v, color=c) for c, v in steps]))


def timeseries(title: str, queries: list[Q], pos: Pos, *, unit: str = "short", description: str = "",
               stack: bool = False, links: Links = None) -> timeseries_b.Panel:
    p = _timeseries(title, DS, _targets(queries), pos, unit=unit, description=description, stack=stack)
    return p.data_links(list(links)) if links else p


def prom_timeseries(title: str, queries: list[PromQ], pos: Pos, *, unit: str = "short", description: str = "",
                    stack: bool = False) -> timeseries_b.Panel:
    """A time series from the Prometheus datasource (the services' /metrics, scraped)."""
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = [
        prom_b.Dataquery().ref_id(chr(ord("A") + i)).datasource(PROM_DS).expr(q.expr).legend_format(q.legend).range()
        for i, q in enumerate(queries)]
    return _timeseries(title, PROM_DS, targets, pos, unit=unit, description=description, stack=stack)


def _timeseries(title: str, ds: dash.DataSourceRef, targets: list[cogbuilder.Builder[cogvariants.Dataquery]],
                pos: Pos, *, unit: str, description: str, stack: bool) -> timeseries_b.Panel:
    p = (timeseries_b.Panel().title(title).datasource(ds).targets(targets).grid_pos(pos.grid())
         .unit(unit).max_data_points(300).line_width(1).fill_opacity(10).span_nulls(True))
    if stack:
        p = p.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL))
    return p.description(description) if description else p


def stat(title: str, queries: list[Q], pos: Pos, *, unit: str = "short", description: str = "",
         thresholds: list[tuple[str, float | None]] | None = None, decimals: int | None = None,
         mappings: list[dash.ValueMapping] | None = None, rows: bool = False,
         text_mode: common.BigValueTextMode = common.BigValueTextMode.VALUE, links: Links = None) -> stat_b.Panel:
    """A big number; `rows`: one tile per row of the result (the feed-health grid), named by its string column."""
    reduce = common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(rows)
    p = (stat_b.Panel().title(title).datasource(DS).targets(_targets(queries)).grid_pos(pos.grid()).unit(unit)
         .reduce_options(reduce).graph_mode(common.BigValueGraphMode.AREA).text_mode(text_mode)
         .color_mode(common.BigValueColorMode.BACKGROUND if thresholds else common.BigValueColorMode.VALUE)
         .thresholds(_thresholds(thresholds or [("blue", None)])))
    if decimals is not None:
        p = p.decimals(decimals)
    if mappings:
        p = p.mappings(mappings)
    if links:
        p = p.data_links(list(links))
    return p.description(description) if description else p


def table(title: str, queries: list[Q], pos: Pos, *, description: str = "",
          mappings: list[dash.ValueMapping] | None = None, links: Links = None) -> table_b.Panel:
    p = table_b.Panel().title(title).datasource(DS).targets(_targets(queries)).grid_pos(pos.grid())
    if mappings:
        p = p.mappings(mappings)
    if links:
        p = p.data_links(list(links))
    return p.description(description) if description else p


def province_map(title: str, query: Q, pos: Pos, *, description: str = "", links: Links = None) -> geomap_b.Panel:
    """Geomap of the provinces: one marker per row at (latitude, longitude), coloured by `severity` 0..3."""
    markers = (common_b.MapLayerOptions().type("markers").name("provinces").tooltip(True)
               .location(common_b.FrameGeometrySource().mode(common.FrameGeometrySourceMode.COORDS)
                         .latitude("latitude").longitude("longitude"))
               .config({"showLegend": True, "style": {
                   "color": {"field": "severity", "fixed": "green"}, "opacity": 0.9,
                   "size": {"fixed": 9, "max": 15, "min": 4},
                   "text": {"field": "name", "fixed": "", "mode": "field"},
                   "textConfig": {"fontSize": 9, "offsetX": 12, "offsetY": 0, "textAlign": "left",
                                  "textBaseline": "middle"}}}))
    p = (geomap_b.Panel().title(title).datasource(DS).targets(_targets([query])).grid_pos(pos.grid())
         .view(geomap_b.MapViewConfig().id("coords").lat(16).lon(106).zoom(5))
         .basemap(common_b.MapLayerOptions().type("default").name("basemap"))
         .layers([markers]).thresholds(_thresholds(SEVERITY_COLORS))
         .mappings(severity_mappings()))
    if links:
        p = p.data_links(list(links))
    return p.description(description) if description else p


def note(title: str, content: str, pos: Pos) -> text_b.Panel:
    return text_b.Panel().title(title).content(content).mode(text_m.TextMode.MARKDOWN).grid_pos(pos.grid())


def value_map(pairs: list[tuple[str, str, str]]) -> list[dash.ValueMapping]:
    """Value → (text, colour) mappings, e.g. a feed status or an alert severity."""
    return [dash.ValueMap(options={v: dash.ValueMappingResult(text=text, color=color, index=i)
                                   for i, (v, text, color) in enumerate(pairs)})]


def severity_mappings() -> list[dash.ValueMapping]:
    return value_map([("0", "ok", "green"), ("1", "info", "blue"), ("2", "warning", "orange"),
                      ("3", "critical", "red")])


def query_variable(name: str, label: str, sql: str, *, multi: bool, include_all: bool) -> dash_b.QueryVariable:
    return (dash_b.QueryVariable(name).label(label).datasource(DS).query(sql).multi(multi).include_all(include_all)
            .refresh(dash.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dash.VariableSort.ALPHABETICAL_ASC))


def annotation(name: str, sql: str, color: str) -> dash_b.AnnotationQuery:
    target = dash.AnnotationTarget()
    target_json: dict[str, object] = {"rawSql": sql, "editorType": "sql", "format": FORMAT_TABLE,
                                      "queryType": "table", "refId": "Anno"}
    return (dash_b.AnnotationQuery().name(name).datasource(DS).enable(True).hide(False).icon_color(color)
            .target(_Raw(target, target_json)))


class _Raw(cogbuilder.Builder[dash.AnnotationTarget]):
    """An annotation target with the plugin's own fields (the SDK's AnnotationTarget is Prometheus-shaped)."""

    def __init__(self, model: dash.AnnotationTarget, payload: dict[str, object]) -> None:
        self._model = model
        self._payload = payload
        model.to_json = lambda: payload  # type: ignore[method-assign]  # serialised as the plugin expects

    def build(self) -> dash.AnnotationTarget:
        return self._model
