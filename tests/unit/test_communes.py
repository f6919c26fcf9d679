"""Communes from the vietnam-provinces library: our province reference equals the library's, and a reading's
dims.commune is checked against its province in the one validation (worker, sink and /ingest), kept out of the
series identity, stored in readings.commune, and sent by the simulator."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from controlroom.catalog import Catalog
from controlroom.communes import COMMUNE_DIM, library_communes, library_provinces
from controlroom.schema import UNKNOWN_DIM, UNKNOWN_DIM_VALUE, Reading, Rejection, validate
from producers.simulator import Simulator
from sinks import rows
from sinks.rows import Record

NOW = 1_795_000_000_000
HOAN_KIEM, BEN_THANH = "00070", "26743"  # Phường Hoàn Kiếm (Hà Nội, 01), Phường Bến Thành (TP. Hồ Chí Minh, 79)
CALL: dict[str, Any] = {"event_id": "c1", "feed": "hotline_calls", "province": "01", "ts": NOW - 1000, "value": 3,
                        "dims": {"line": "113", COMMUNE_DIM: HOAN_KIEM}, "source": "unit"}


def check(doc: dict[str, Any], catalog: Catalog) -> Reading | Rejection:
    return validate(doc, catalog, ref_ms=NOW, max_future_ms=300_000, topic_feed=doc["feed"],
                    agency=catalog.registry.supplier(doc["feed"], doc["province"]))


def with_dims(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out.update({k: v for k, v in changes.items() if k != "dims"})
    out["dims"].update(changes.get("dims", {}))
    return out


def test_library_provinces_equal_our_reference(catalog: Catalog) -> None:
    lib = library_provinces()
    assert len(lib) == 34
    assert [(p.code, p.name, p.kind) for p in lib] == \
        [(p.code, p.name_vi, p.kind) for p in sorted(catalog.provinces.values(), key=lambda p: p.code)]


def test_library_communes_all_belong_to_our_provinces(catalog: Catalog) -> None:
    communes = library_communes()
    assert len(communes) == len(catalog.communes) == 3321
    assert all(len(c.code) == 5 and c.code.isdigit() for c in communes)
    assert {c.province for c in communes} == set(catalog.provinces)
    assert catalog.communes[HOAN_KIEM].name == "Phường Hoàn Kiếm" and catalog.communes[HOAN_KIEM].province == "01"
    assert catalog.communes[BEN_THANH].province == "79"
    assert sum(len(cs) for cs in catalog.communes_by_province.values()) == 3321


def test_place_feeds_carry_communes(catalog: Catalog) -> None:
    assert {f.id for f in catalog.feeds.values() if f.communes} == \
        {"citizen_feedback", "sar_incidents", "hotline_calls", "water_level"}


def test_commune_of_the_province_is_kept_out_of_the_series(catalog: Catalog) -> None:
    r = check(CALL, catalog)
    assert isinstance(r, Reading), r
    assert r.commune == HOAN_KIEM and r.dims == {"line": "113"} and r.dims_key == "line=113"
    plain = check(with_dims(CALL) | {"dims": {"line": "113"}}, catalog)
    assert isinstance(plain, Reading) and plain.commune == "" and plain.dims_key == r.dims_key  # optional


def test_commune_of_another_province_is_rejected_naming_it(catalog: Catalog) -> None:
    r = check(with_dims(CALL, dims={COMMUNE_DIM: BEN_THANH}), catalog)
    assert r == Rejection(UNKNOWN_DIM_VALUE, "dims.commune",
                          "commune 26743 (Phường Bến Thành) is in province 79, not 01")


@pytest.mark.parametrize("code", ["70", "99999", "0007O", "hoan_kiem"])
def test_unknown_commune_code_is_rejected(catalog: Catalog, code: str) -> None:
    r = check(with_dims(CALL, dims={COMMUNE_DIM: code}), catalog)
    assert isinstance(r, Rejection) and (r.reason, r.field) == (UNKNOWN_DIM_VALUE, "dims.commune")


def test_commune_is_checked_against_the_current_province_of_a_legacy_code(catalog: Catalog) -> None:
    # legacy 02 (Hà Giang) is now 08 (Tuyên Quang): a commune of 08 passes, one of 01 does not
    tq = catalog.communes_by_province["08"][0].code
    ok = check(with_dims(CALL, province="02", dims={COMMUNE_DIM: tq}), catalog)
    assert isinstance(ok, Reading) and (ok.province, ok.province_original, ok.commune) == ("08", "02", tq)
    bad = check(with_dims(CALL, province="02"), catalog)
    assert isinstance(bad, Rejection) and bad.field == "dims.commune"


def test_feed_without_communes_refuses_the_dimension(catalog: Catalog) -> None:
    doc = {"event_id": "x", "feed": "electricity_load", "province": "01", "ts": NOW, "value": 100.0,
           "dims": {COMMUNE_DIM: HOAN_KIEM}}
    r = check(doc, catalog)
    assert isinstance(r, Rejection) and (r.reason, r.field) == (UNKNOWN_DIM, "dims.commune")


def test_wrong_type_of_commune(catalog: Catalog) -> None:
    r = check(with_dims(CALL, dims={COMMUNE_DIM: 70}), catalog)
    assert isinstance(r, Rejection) and r.field == "dims.commune" and r.reason == "wrong_type"


def test_sink_stores_the_commune_in_its_own_column(catalog: Catalog) -> None:
    recs = [Record("feeds.hotline_calls", 0, 1, NOW, orjson.dumps(CALL), "hotlines"),
            Record("feeds.hotline_calls", 0, 2, NOW, orjson.dumps(with_dims(CALL, event_id="c2") |
                                                                  {"dims": {"line": "113"}}), "hotlines"),
            Record("feeds.hotline_calls", 0, 3, NOW,
                   orjson.dumps(with_dims(CALL, event_id="c3", dims={COMMUNE_DIM: BEN_THANH})), "hotlines")]
    out = rows.convert(recs, catalog, max_future_ms=300_000, ingested_ms=NOW)
    got = out.tables["readings"].to_pylist()
    assert [(r["event_id"], r["commune"], r["dims_key"], r["dims"]) for r in got] == [
        ("c1", HOAN_KIEM, "line=113", [("line", "113")]), ("c2", "", "line=113", [("line", "113")])]
    assert out.rejected == 1  # the worker dead-letters it, naming dims.commune


def test_simulator_sends_communes_of_the_province(catalog: Catalog) -> None:
    start = NOW - 600_000
    msgs = Simulator(catalog, seed=4, start_ms=start).between(start, start + 300_000)
    docs = [orjson.loads(v) for _t, _k, v in msgs]
    placed = [d for d in docs if catalog.feeds[d["feed"]].communes]
    assert placed and all(COMMUNE_DIM in d["dims"] for d in placed)
    assert not [d for d in docs if not catalog.feeds[d["feed"]].communes and COMMUNE_DIM in d["dims"]]
    assert all(catalog.communes[d["dims"][COMMUNE_DIM]].province == d["province"] for d in placed)
    stations: dict[tuple[str, str], set[str]] = {}
    for d in placed:
        if d["feed"] == "water_level":
            stations.setdefault((d["province"], d["dims"]["station"]), set()).add(d["dims"][COMMUNE_DIM])
    assert stations and all(len(c) == 1 for c in stations.values())  # a station stays where it is
    calls_113 = {d["dims"][COMMUNE_DIM] for d in placed
                 if d["feed"] == "hotline_calls" and d["province"] == "01" and d["dims"]["line"] == "113"}
    assert 3 <= len(calls_113) <= 12  # one series' events spread over a dozen hotspots of its province
