"""The committed grafana/dashboards/*.json are exactly what the code generates (run `make grafana`), and the
boards have the shape issue 5 asks for."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from controlroom.catalog import Catalog
from grafana.generate import differences, generate
from grafana.layout import DASHBOARDS


def test_committed_json_matches_the_code(catalog: Catalog) -> None:
    assert differences(catalog) == [], "grafana/dashboards is out of date: run `make grafana` and commit"


def test_board_shapes(catalog: Catalog) -> None:
    boards = {name: json.loads(text) for name, text in generate(catalog).items()}
    assert len(boards) == 7 + len(catalog.categories) == 14
    assert len({b["uid"] for b in boards.values()}) == 14
    wall = boards["national-wall.json"]
    assert wall["refresh"] == "5s"
    types = [p["type"] for p in wall["panels"]]
    assert types.count("stat") == 7 + 2 and "geomap" in types and "table" in types
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in wall["panels"])
    explorer = boards["feed-explorer.json"]
    assert [v["name"] for v in explorer["templating"]["list"]] == ["feed", "province", "dims"]
    assert [v.get("includeAll", False) for v in explorer["templating"]["list"]] == [False, True, True]
    clickhouse = {"type": "grafana-clickhouse-datasource", "uid": "controlroom-clickhouse"}
    prometheus = {"type": "prometheus", "uid": "controlroom-prometheus"}
    for name, b in boards.items():
        for p in b["panels"]:
            for t in p.get("targets", []):
                # only the pipeline's own health comes from Prometheus (the services' /metrics)
                assert t["datasource"] == (prometheus if "expr" in t else clickhouse), (name, p["title"])
                assert "expr" not in t or name == "pipeline-health.json"
    pipeline = boards["pipeline-health.json"]
    exprs = [t["expr"] for p in pipeline["panels"] for t in p["targets"] if "expr" in t]
    assert any("controlroom_consumer_lag" in e for e in exprs)
    assert any("controlroom_readings_in_total" in e for e in exprs)
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(boards)


def data_links(board: dict[str, Any]) -> dict[str, list[str]]:
    """Panel title → the URLs of its data links."""
    return {p["title"]: [link["url"] for link in p.get("fieldConfig", {}).get("defaults", {}).get("links", [])]
            for p in board["panels"]}


def test_data_links_drill_down_to_boards_that_take_their_variables(catalog: Catalog) -> None:
    boards = {name.removesuffix(".json"): json.loads(text) for name, text in generate(catalog).items()}
    by_uid = {b["uid"]: b for b in boards.values()}
    province = boards["province"]
    assert [(v["name"], v.get("multi", False), v.get("includeAll", False))
            for v in province["templating"]["list"]] == [("province", True, False)]
    wall = data_links(boards["national-wall"])
    assert wall["34 tỉnh, thành · cảnh báo nặng nhất"] == [
        "/d/controlroom-province?var-province=${__data.fields.code}&${__url_time_range}"]
    assert wall["Cảnh báo đang kích hoạt · Firing alerts"] == [
        "/d/controlroom-province?var-province=${__data.fields.province}&${__url_time_range}",
        "/d/controlroom-feed-explorer?var-feed=${__data.fields.feed}&var-province=${__data.fields.province}"
        "&${__url_time_range}"]
    assert wall["Tình trạng 25 nguồn · Feed health"] == [
        "/d/controlroom-feed-explorer?var-feed=${__data.fields.feed}&var-province=$__all&${__url_time_range}"]
    tiles = [t for t, urls in wall.items() if any(f"var-feed={f}&" in u for u in urls for f in catalog.feeds)]
    assert len(tiles) == 7  # every category tile opens its headline feed
    calls = data_links(boards["category-focal-issues"])["Cuộc gọi đường dây nóng theo tỉnh · by province"]
    assert calls[1] == ("/d/controlroom-feed-explorer?var-feed=hotline_calls&var-province=${__data.fields.province}"
                        "&${__url_time_range}")
    assert data_links(province)["Các nguồn của tỉnh · Feeds of the province"] == [
        "/d/controlroom-feed-explorer?var-feed=${__data.fields.feed}&${province:queryparam}&${__url_time_range}"]
    # every link of every board: a board that exists, and variables it has; a field the panel's query returns
    for name, board in boards.items():
        for title, urls in data_links(board).items():
            panel = next(p for p in board["panels"] if p["title"] == title)
            sql = " ".join(t.get("rawSql", "") for t in panel["targets"])
            for url in urls:
                parsed = urlsplit(url)
                target = by_uid[parsed.path.removeprefix("/d/")]
                names = {v["name"] for v in target["templating"]["list"]}
                params = dict(p.split("=", 1) for p in parsed.query.split("&") if p.startswith("var-"))
                carried = {p[2:-len(":queryparam}")] for p in parsed.query.split("&") if p.endswith(":queryparam}")}
                own = {v["name"] for v in board.get("templating", {}).get("list", [])}
                assert {k.removeprefix("var-") for k in params} | carried <= names, (name, title, url)
                assert carried <= own, (name, title, url)  # a variable carried over is one this board has
                for value in params.values():
                    if value.startswith("${__data.fields."):
                        assert f" AS {value[16:-1]}" in sql or f" {value[16:-1]}," in sql, (name, title, value)
