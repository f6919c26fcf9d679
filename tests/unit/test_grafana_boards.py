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
