"""The feed catalog and province reference load, validate, and map legacy codes."""

from __future__ import annotations

import copy

import pytest

from controlroom.catalog import NATIONAL, Catalog, load_catalog, parse_catalog
from controlroom.errors import CatalogError


def test_catalog_has_25_feeds_7_categories_34_provinces(catalog: Catalog) -> None:
    assert len(catalog.feeds) == 25
    assert len(catalog.categories) == 7
    assert {f.category for f in catalog.feeds.values()} == set(catalog.categories)
    assert len(catalog.provinces) == 34
    assert NATIONAL not in catalog.provinces
    assert len(catalog.legacy_to_current) == 63  # every pre-2025 province code, each mapped once


@pytest.mark.parametrize(("code", "current"), [
    ("01", "01"),  # unchanged
    ("02", "08"),  # Hà Giang → Tuyên Quang
    ("74", "79"), ("77", "79"),  # Bình Dương, Bà Rịa–Vũng Tàu → Hồ Chí Minh City
    ("93", "92"), ("94", "92"),  # Hậu Giang, Sóc Trăng → Cần Thơ
    ("64", "52"),  # Gia Lai absorbed into the new Gia Lai (52, Bình Định)
])
def test_legacy_codes_map_to_current_province(catalog: Catalog, code: str, current: str) -> None:
    assert catalog.current_province(code) == current


def test_unknown_codes_do_not_map(catalog: Catalog) -> None:
    assert catalog.current_province("99") is None
    assert catalog.current_province("00") is None  # national pseudo-code is not a province


def test_series_count_follows_scope_and_dims(catalog: Catalog) -> None:
    gold = catalog.feeds["gold_price"]
    assert catalog.series_provinces(gold) == [NATIONAL]
    assert gold.dim_combinations() == [{"side": "buy"}, {"side": "sell"}]
    press = catalog.feeds["press_mentions"]
    assert len(press.dim_combinations()) == 12  # 4 topics × 3 sentiments
    assert sum(1 for _ in catalog.iter_series()) == 2146


# Open: values that grow with the country (stations, hotlines, diseases, monitored goods, report codes).
# Closed: booleans, sides, fixed classifications.
OPEN_DIMS = {
    ("air_quality_pm25", "station"), ("water_level", "station"), ("hotline_calls", "line"),
    ("epidemic_cases", "disease"), ("commodity_prices", "commodity"), ("report_submissions", "report_code"),
}


def test_each_dim_is_open_or_closed(catalog: Catalog) -> None:
    got = {(f.id, d) for f in catalog.feeds.values() for d in f.open_dims}
    assert got == OPEN_DIMS
    for f in catalog.feeds.values():
        assert f.open_dims <= set(f.dims)
        assert all(f.dims[d] for d in f.dims)  # closed: its allowed values; open: its examples
    assert catalog.feeds["water_level"].dims == {"station": ("s1", "s2")}  # the examples the simulator sends
    assert catalog.feeds["dvc_dossiers_resolved"].dims == {"on_time": ("true", "false")}
    assert catalog.feeds["dvc_dossiers_resolved"].open_dims == frozenset()
    assert catalog.feeds["report_submissions"].open_dims == {"report_code"}


def test_topics_are_feed_ids(catalog: Catalog) -> None:
    assert catalog.feeds["water_level"].topic == "feeds.water_level"
    assert catalog.feed_for_topic("feeds.water_level") is catalog.feeds["water_level"]
    assert catalog.feed_for_topic("feeds.nope") is None and catalog.feed_for_topic("agg.1m") is None


def _docs() -> tuple[dict, list[dict[str, str]]]:  # type: ignore[type-arg]
    import csv
    from importlib import resources

    import yaml

    base = resources.files("controlroom") / "data"
    feeds = yaml.safe_load((base / "feeds.yaml").read_text(encoding="utf-8"))
    rows = list(csv.DictReader((base / "provinces.csv").read_text(encoding="utf-8").splitlines()))
    return feeds, rows


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda f, p: f["feeds"][0].pop("unit"), "missing field 'unit'"),
    (lambda f, p: f["feeds"][0].update(kind="rate"), "kind must be counter or gauge"),
    (lambda f, p: f["feeds"][0].update(category="weather"), "unknown category 'weather'"),
    (lambda f, p: f["feeds"][0].update(valid=[5, 1]), "valid range"),
    (lambda f, p: f["feeds"].append(copy.deepcopy(f["feeds"][0])), "defined twice"),
    (lambda f, p: p[1].update(merged_from_legacy_codes="01"), "claimed by 01 and 04"),
    (lambda f, p: p[0].update(code="00"), "reserved"),
    (lambda f, p: f["feeds"][0].update(dims=["topic"]), "dims must be a mapping"),
    (lambda f, p: f["feeds"][0].update(dims={"station": "open"}), r"dims.station: must be the list of its allowed "
                                                                  r"values \(closed\) or \{open: true, examples"),
    (lambda f, p: f["feeds"][0].update(dims={"station": {"open": True}}), "dims.station: must be the list"),
    (lambda f, p: f["feeds"][0].update(dims={"station": {"open": False, "examples": ["s1"]}}),
     "dims.station: must be the list"),
    (lambda f, p: f["feeds"][0].update(dims={"station": {"open": True, "examples": []}}),
     "dims.station: needs a non-empty list"),
    (lambda f, p: f["feeds"][0].update(dims={"station": {"open": True, "examples": "s1"}}),
     "dims.station: needs a non-empty list"),
    (lambda f, p: f["feeds"][0].update(dims={"on_time": []}), "dims.on_time: needs a non-empty list"),
    (lambda f, p: f["feeds"][0].update(dims={"on_time": [True, False]}), r"quote true, false and numbers"),
    (lambda f, p: f["feeds"][0].update(dims={"line": [111, 113]}), r"quote true, false and numbers"),
    (lambda f, p: f["feeds"][0].update(dims={"side": ["buy", "buy"]}), "listed twice"),
])
def test_invalid_catalog_is_rejected_with_a_clear_message(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    feeds, rows = _docs()
    mutate(feeds, rows)
    with pytest.raises(CatalogError, match=message):
        parse_catalog(feeds, rows)


def test_catalog_error_names_the_feed() -> None:
    feeds, rows = _docs()
    feeds["feeds"][1].update(dims={"disease": "open"})
    with pytest.raises(CatalogError, match="^feed 'epidemic_cases': dims.disease: "):
        parse_catalog(feeds, rows)


def test_unreadable_catalog_file_names_the_problem(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "missing.yaml")
