"""Feed contracts (agencies.yaml `contracts:`): generated from the cadence, overridden per body × feed, checked."""

from __future__ import annotations

from typing import Any

import pytest

from controlroom.catalog import NATIONAL, Catalog, feed_provinces
from controlroom.contracts import hour_quality, parse_contracts, volume_share
from controlroom.errors import CatalogError
from controlroom.schema import dims_key


def _parse(catalog: Catalog, doc: Any) -> dict[str, Any]:
    series = [(f.id, p) for f in catalog.feeds.values() for p in feed_provinces(f, catalog.provinces)]
    return parse_contracts(doc, catalog.feeds, catalog.registry, series)


def test_every_series_is_in_exactly_one_contract_of_its_supplier(catalog: Catalog) -> None:
    owner: dict[tuple[str, str, str], str] = {}
    for c in catalog.contracts.values():
        for province, dkey in c.series:
            assert (c.feed, province, dkey) not in owner
            owner[(c.feed, province, dkey)] = c.agency
    expected = {(f.id, p, dims_key(d)): catalog.registry.supplier(f.id, p) for f, p, d in catalog.iter_series()}
    assert owner == expected
    assert len(catalog.contracts) == 58  # 24 central (body, feed) pairs and the 34 centers' citizen reports


def test_defaults_follow_the_cadence_and_an_override_changes_one(catalog: Catalog) -> None:
    water = catalog.contracts["hydromet/water_level"]
    assert len(water.series) == 68 and water.cadence_s == 60  # 34 provinces × stations s1, s2
    assert (water.per_hour_min, water.per_hour_max) == pytest.approx((0.8 * 68 * 60, 1.25 * 68 * 60))
    assert water.timeliness_pct == 99.5  # the shipped override
    assert catalog.contracts["sbv/fx_usd_vnd"].provinces == (NATIONAL,)  # a national feed: one province, 00
    assert catalog.contracts["ioc_79/citizen_feedback"].provinces == ("79",)


def test_an_override_narrows_the_coverage_and_sets_an_absolute_band(catalog: Catalog) -> None:
    doc = {"defaults": {"timeliness_pct": 95}, "overrides": [
        {"agency": "hydromet", "feed": "water_level", "provinces": ["01", "79"], "dims": {"station": ["s1"]},
         "readings_per_hour": [100, 130], "cadence_s": 30}]}
    c = _parse(catalog, doc)["hydromet/water_level"]
    assert c.series == (("01", "station=s1"), ("79", "station=s1"))
    assert (c.per_hour_min, c.per_hour_max, c.cadence_s, c.timeliness_pct) == (100, 130, 30, 95)
    assert c.expected_per_hour == 240


@pytest.mark.parametrize(("doc", "message"), [
    ({"overrides": [{"agency": "moh", "feed": "water_level"}]}, r"overrides\[0\]\.agency: 'moh' supplies no series"),
    ({"overrides": [{"agency": "hydromet", "feed": "rain"}]}, r"overrides\[0\]\.feed: unknown feed 'rain'"),
    ({"overrides": [{"agency": "hydromet", "feed": "water_level", "provinces": ["99"]}]},
     r"provinces\[0\]: '99' is not a province"),
    ({"overrides": [{"agency": "hydromet", "feed": "water_level", "dims": {"station": ["s9"]}}]},
     r"dims\.station: must be a non-empty list of its values"),
    ({"overrides": [{"agency": "hydromet", "feed": "water_level", "band": [2, 1]}]}, "min 2 is above max 1"),
    ({"overrides": [{"agency": "hydromet", "feed": "water_level", "timeliness_pct": 120}]},
     r"timeliness_pct: must be > 0 and <= 100"),
    ({"overrides": [{"agency": "hydromet", "feed": "water_level", "band": [1, 2], "readings_per_hour": [1, 2]}]},
     "not both"),
    ({"overrides": [{"agency": "hydromet", "feed": "water_level", "colour": "red"}]},
     r"overrides\[0\]\.colour: unknown field"),
    ({"overrides": [{"agency": "hydromet", "feed": "water_level"}, {"agency": "hydromet", "feed": "water_level"}]},
     "a second override"),
    ({"defaults": {"band": [0.5]}}, r"defaults\.band: must be \[min, max\]"),
    ({"penalties": 1}, r"contracts\.penalties: unknown field"),
])
def test_a_bad_contract_is_refused_naming_the_field(catalog: Catalog, doc: Any, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        _parse(catalog, doc)


def test_volume_share_and_hour_quality() -> None:
    assert volume_share(100, 80, 125) == 1.0
    assert volume_share(40, 80, 125) == 0.5
    assert volume_share(250, 80, 125) == 0.5
    assert hour_quality(1.0, 1.0, 1.0, 1.0, 99) == pytest.approx(100)
    # a silent hour: nothing to be late or invalid, nothing reported
    assert hour_quality(0.0, None, None, 0.0, 99) == 0
    # timeliness at the promise counts as met; below it, the share of the promise
    assert hour_quality(1.0, 0.99, 1.0, 1.0, 99) == pytest.approx(100)
    assert hour_quality(1.0, 0.495, 1.0, 1.0, 99) == pytest.approx(90)
    assert hour_quality(0.5, 1.0, 1.0, 1.0, 99) == pytest.approx(80)
    assert hour_quality(None, None, None, None, 99) is None
