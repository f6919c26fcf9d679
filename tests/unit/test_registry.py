"""The registry of connected bodies (controlroom/data/agencies.yaml): coverage, province centers, parents."""

from __future__ import annotations

import pytest

from controlroom.catalog import NATIONAL, Catalog
from controlroom.errors import CatalogError
from controlroom.registry import BODY_TYPES, parse_registry


def test_every_feed_has_a_supplier_for_every_series(catalog: Catalog) -> None:
    reg = catalog.registry
    assert set(reg.senders) == set(catalog.feeds)
    for feed, province, _dims in catalog.iter_series():
        supplier = reg.supplier(feed.id, province)
        assert supplier in reg.senders[feed.id], (feed.id, province)
        assert reg.sender_denial(supplier, feed.id, province) is None  # the simulator's header passes validation


def test_every_province_has_its_center(catalog: Catalog) -> None:
    centers = {b.province: b for b in catalog.registry.bodies.values() if b.type == "province"}
    assert set(centers) == set(catalog.provinces) and len(centers) == 34
    hanoi = centers["01"]
    assert (hanoi.id, hanoi.name_en) == ("ioc_01", "Hanoi intelligent operations center")
    assert "Thành phố Hà Nội" in hanoi.name_vi and hanoi.contact == "ioc-01@example.gov.vn"
    assert catalog.registry.supplier("citizen_feedback", "79") == "ioc_79"  # each province's reports, its center


def test_parents_resolve_and_fields_are_complete(catalog: Catalog) -> None:
    bodies = catalog.registry.bodies
    assert {b.type for b in bodies.values()} == set(BODY_TYPES)
    for b in bodies.values():
        assert b.parent == "" or b.parent in bodies, b.id
        assert b.name_vi and b.name_en and "@" in b.contact, b.id
    assert bodies["evn_nldc"].parent == "evn" and bodies["evn"].type == "corporation"
    assert catalog.registry.supplier("electricity_load", "79") == "evn_nldc"
    assert catalog.registry.supplier("fx_usd_vnd", NATIONAL) == "sbv"
    central = [b for b in bodies.values() if b.type != "province"]
    assert 15 <= len(central) <= 30  # the ministries, agencies and corporations of the first phase


@pytest.mark.parametrize(("doc", "message"), [
    ({"agencies": [{"id": "x", "name_vi": "x", "name_en": "x", "feeds": ["weather"]}]}, "unknown feeds"),
    ({"agencies": [{"id": "x", "name_vi": "x", "name_en": "x", "parent": "nobody"}]}, "unknown parent"),
    ({"agencies": [{"id": "x", "name_vi": "x", "name_en": "x", "type": "club"}]}, "type must be one of"),
    ({"agencies": [{"id": "x", "name_vi": "x", "name_en": "x"}, {"id": "x", "name_vi": "y", "name_en": "y"}]},
     "defined twice"),
    ({"agencies": [{"id": "x", "name_en": "x"}]}, "missing field 'name_vi'"),
])
def test_a_bad_registry_is_refused_naming_the_problem(catalog: Catalog, doc: dict[str, object], message: str) -> None:
    names = {c: (p.name_vi, p.name_en) for c, p in catalog.provinces.items()}
    with pytest.raises(CatalogError, match=message):
        parse_registry(doc, catalog.feeds, names)
