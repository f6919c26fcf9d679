"""The pure parts of read-side province scope (api/scope.py): the scope's database name and its views' DDL."""

from __future__ import annotations

import pytest

from api.scope import scope_database, scoped_catalog, view_statements
from controlroom.catalog import default_catalog
from controlroom.errors import ConfigError


def test_scope_database_is_the_projects_for_a_national_key_and_one_per_province_set() -> None:
    assert scope_database("controlroom", []) == "controlroom"
    assert scope_database("controlroom", {"79", "01"}) == scope_database("controlroom", ["01", "79", "01"])
    assert scope_database("controlroom", {"79", "01"}) == "controlroom_p_01_79"
    with pytest.raises(ValueError, match="not province codes"):
        scope_database("controlroom", ["01') OR 1=1 --"])
    with pytest.raises(ConfigError):
        scope_database("controlroom; DROP", ["01"])


def test_views_filter_by_province_read_final_and_leave_the_rest_empty() -> None:
    tables = {"readings": (True, "ReplacingMergeTree"), "agg_1m_final": (True, "View"),
              "incident_events": (True, "MergeTree"), "dead_letters": (False, "MergeTree"),
              "provinces": (False, "MergeTree"), "provinces__refresh_abc": (False, "MergeTree"),
              "schema_migrations": (False, "ReplacingMergeTree")}
    assert view_statements("controlroom", ["79", "01"], tables) == [
        "CREATE DATABASE IF NOT EXISTS controlroom_p_01_79",
        "CREATE OR REPLACE VIEW controlroom_p_01_79.agg_1m_final AS SELECT * FROM controlroom.agg_1m_final "
        "WHERE province IN ('01', '79', '00')",
        "CREATE OR REPLACE VIEW controlroom_p_01_79.dead_letters AS SELECT * FROM controlroom.dead_letters WHERE 0",
        "CREATE OR REPLACE VIEW controlroom_p_01_79.incident_events AS SELECT * FROM controlroom.incident_events "
        "WHERE province IN ('01', '79', '00')",
        "CREATE OR REPLACE VIEW controlroom_p_01_79.provinces AS SELECT * FROM controlroom.provinces",
        "CREATE OR REPLACE VIEW controlroom_p_01_79.readings AS SELECT * FROM controlroom.readings FINAL "
        "WHERE province IN ('01', '79', '00')",
    ]


def test_a_scoped_catalog_keeps_its_provinces_and_every_feed() -> None:
    catalog = default_catalog()
    assert scoped_catalog(catalog, []) is catalog
    scoped = scoped_catalog(catalog, {"01", "79"})
    assert sorted(scoped.provinces) == ["01", "79"] and scoped.feeds == catalog.feeds
    assert len(catalog.provinces) == 34  # the original is untouched

