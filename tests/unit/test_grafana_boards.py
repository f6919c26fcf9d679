"""The committed grafana/dashboards/*.json are exactly what the code generates (run `make grafana`), and the
boards have the shape issue 5 asks for."""

from __future__ import annotations

import json

from controlroom.catalog import Catalog
from grafana.generate import differences, generate
from grafana.layout import DASHBOARDS


def test_committed_json_matches_the_code(catalog: Catalog) -> None:
    assert differences(catalog) == [], "grafana/dashboards is out of date: run `make grafana` and commit"


def test_board_shapes(catalog: Catalog) -> None:
    boards = {name: json.loads(text) for name, text in generate(catalog).items()}
    assert len(boards) == 3 + len(catalog.categories) == 10
    assert len({b["uid"] for b in boards.values()}) == 10
    wall = boards["national-wall.json"]
    assert wall["refresh"] == "5s"
    types = [p["type"] for p in wall["panels"]]
    assert types.count("stat") == 7 + 2 and "geomap" in types and "table" in types
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in wall["panels"])
    explorer = boards["feed-explorer.json"]
    assert [v["name"] for v in explorer["templating"]["list"]] == ["feed", "province", "dims"]
    assert [v.get("includeAll", False) for v in explorer["templating"]["list"]] == [False, True, True]
    for b in boards.values():
        for p in b["panels"]:
            for t in p.get("targets", []):
                assert t["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "controlroom-clickhouse"}
    assert sorted(p.name for p in DASHBOARDS.glob("*.json")) == sorted(boards)
