"""The simulator: deterministic by seed, every series early, realistic rhythm, incidents that bite."""

from __future__ import annotations

from collections import defaultdict

import orjson
import pytest

from controlroom.catalog import Catalog
from controlroom.communes import COMMUNE_DIM
from controlroom.schema import Reading, Rejection, agency_headers, agency_of, decode_and_validate
from producers.simulator import Incident, Simulator, parse_incident

# 2026-11-23 is a Monday. 03:00 UTC = 10:00 in Vietnam (UTC+7).
MON_10_LOCAL = 1_795_316_400_000
HOUR = 3_600_000


def docs(messages: list[tuple[str, bytes, bytes]]) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(v) for _, _, v in messages]


def test_same_seed_same_messages_other_seed_differs(catalog: Catalog) -> None:
    a = Simulator(catalog, seed=7, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + 120_000)
    b = Simulator(catalog, seed=7, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + 120_000)
    c = Simulator(catalog, seed=8, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + 120_000)
    assert a == b and len(a) > 1000
    assert a != c


def test_every_series_reports_within_ten_seconds(catalog: Catalog) -> None:
    msgs = Simulator(catalog, seed=1, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + 10_001)
    seen = {(d["feed"], d["province"], tuple(sorted((k, v) for k, v in d["dims"].items() if k != COMMUNE_DIM)))
            for d in docs(msgs)}  # the commune is where a reading happened, not a series
    assert len(seen) == sum(1 for _ in catalog.iter_series()) == 2146
    assert {d["feed"] for d in docs(msgs)} == set(catalog.feeds)


def test_every_reading_passes_validation_and_keys_by_province(catalog: Catalog) -> None:
    msgs = Simulator(catalog, seed=3, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + 300_000)
    for topic, key, raw in msgs:
        [(_, agency)] = agency_headers(catalog, topic, key)  # sent as the series' supplier
        r = decode_and_validate(raw, catalog, ref_ms=MON_10_LOCAL + 300_000, max_future_ms=0,
                                topic_feed=topic.removeprefix("feeds."), agency=agency.decode())
        assert isinstance(r, Reading), r
        assert key.decode() == r.province and r.agency == catalog.registry.supplier(r.feed, r.province)


def hourly_total(catalog: Catalog, feed: str, start_ms: int, hours: float = 1.0) -> float:
    msgs = Simulator(catalog, seed=5, start_ms=start_ms).between(start_ms, start_ms + int(hours * HOUR), 5_000)
    values = [d["value"] for d in docs(msgs) if d["feed"] == feed]
    return sum(values) / len(values)


def test_office_hours_and_evening_peak(catalog: Catalog) -> None:
    # dossiers: 10:00 weekday ≫ 03:00 (local)
    assert hourly_total(catalog, "dvc_dossiers_received", MON_10_LOCAL) > \
        5 * hourly_total(catalog, "dvc_dossiers_received", MON_10_LOCAL - 7 * HOUR)
    # electricity: 19:00 local > 04:00 local (gauges start at their base: compare late in the hour)
    assert hourly_total(catalog, "electricity_load", MON_10_LOCAL + 9 * HOUR, 2) > \
        hourly_total(catalog, "electricity_load", MON_10_LOCAL - 6 * HOUR, 2)


def test_vn_index_holds_still_outside_market_hours(catalog: Catalog) -> None:
    night = MON_10_LOCAL + 10 * HOUR  # 20:00 local
    msgs = Simulator(catalog, seed=2, start_ms=night).between(night, night + 600_000)
    values = {d["value"] for d in docs(msgs) if d["feed"] == "vn_index"}
    assert len(values) == 1


def test_big_cities_are_largest(catalog: Catalog) -> None:
    msgs = Simulator(catalog, seed=4, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + HOUR, 5_000)
    visits: dict[str, float] = defaultdict(float)
    for d in docs(msgs):
        if d["feed"] == "dvc_portal_visits":
            visits[d["province"]] += d["value"]
    ranked = sorted(visits, key=visits.__getitem__, reverse=True)
    assert set(ranked[:2]) == {"01", "79"}
    assert visits["01"] > 2 * visits["04"]  # Hà Nội vs Cao Bằng


def test_spike_multiplies_only_the_filtered_series(catalog: Catalog) -> None:
    spike = Incident("spike", MON_10_LOCAL, MON_10_LOCAL + HOUR, feed="hotline_calls", province="01", factor=10)
    plain = Simulator(catalog, seed=9, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + 600_000)
    spiked = Simulator(catalog, seed=9, start_ms=MON_10_LOCAL, incidents=[spike]).between(
        MON_10_LOCAL, MON_10_LOCAL + 600_000)
    pairs = list(zip(docs(plain), docs(spiked), strict=True))
    hit = [(a["value"], b["value"]) for a, b in pairs if a["feed"] == "hotline_calls" and a["province"] == "01"]
    assert hit and all(b == a * 10 for a, b in hit)
    assert all(a == b for a, b in pairs if not (a["feed"] == "hotline_calls" and a["province"] == "01"))


def test_silent_province_sends_nothing_in_its_window(catalog: Catalog) -> None:
    silent = Incident("silent", MON_10_LOCAL + 60_000, MON_10_LOCAL + 240_000, province="79")
    msgs = Simulator(catalog, seed=1, start_ms=MON_10_LOCAL, incidents=[silent]).between(
        MON_10_LOCAL, MON_10_LOCAL + 300_000)
    from_79 = [d["ts"] for d in docs(msgs) if d["province"] == "79"]
    assert from_79 and not [t for t in from_79 if MON_10_LOCAL + 60_000 <= t < MON_10_LOCAL + 240_000]
    assert any(t >= MON_10_LOCAL + 240_000 for t in from_79)  # and it comes back


def test_malformed_messages_are_rejected_with_each_reason(catalog: Catalog) -> None:
    bad = Incident("malformed", MON_10_LOCAL, MON_10_LOCAL + HOUR, fraction=1.0)
    msgs = Simulator(catalog, seed=1, start_ms=MON_10_LOCAL, incidents=[bad]).between(
        MON_10_LOCAL, MON_10_LOCAL + 30_000)
    verdicts = [decode_and_validate(v, catalog, ref_ms=MON_10_LOCAL + HOUR, max_future_ms=0,
                                    topic_feed=t.removeprefix("feeds."),
                                    agency=agency_of(agency_headers(catalog, t, k))) for t, k, v in msgs]
    assert all(isinstance(v, Rejection) for v in verdicts)
    reasons = {v.reason for v in verdicts if isinstance(v, Rejection)}
    # a bad province on a national feed is a scope_mismatch rather than an unknown_province
    assert reasons - {"scope_mismatch"} == {"malformed", "missing_field", "wrong_type", "out_of_range",
                                             "unknown_province"}


def test_late_readings_are_shifted_back(catalog: Catalog) -> None:
    late = Incident("late", MON_10_LOCAL, MON_10_LOCAL + HOUR, feed="water_level", fraction=1.0, delay_s=300)
    plain = docs(Simulator(catalog, seed=6, start_ms=MON_10_LOCAL).between(MON_10_LOCAL, MON_10_LOCAL + 60_000))
    shifted = docs(Simulator(catalog, seed=6, start_ms=MON_10_LOCAL, incidents=[late]).between(
        MON_10_LOCAL, MON_10_LOCAL + 60_000))
    diffs = {a["ts"] - b["ts"] for a, b in zip(plain, shifted, strict=True) if a["feed"] == "water_level"}
    assert diffs == {300_000}


def test_parse_incident() -> None:
    inc = parse_incident("spike:feed=hotline_calls,province=01,factor=5,start=+60,duration=300", 1_000_000)
    assert inc == Incident("spike", 1_060_000, 1_360_000, "hotline_calls", "01", 5.0, 1.0, 120.0)
    for spec, message in [("flood:feed=x", "not one of"), ("spike:feed", "key=value"),
                          ("spike:colour=red", "unknown incident option"), ("spike:factor=lots", "factor")]:
        with pytest.raises(ValueError, match=message):
            parse_incident(spec, 0)


def test_a_silent_agency_sends_nothing_of_the_series_it_supplies(catalog: Catalog) -> None:
    silent = parse_incident("silent:agency=hydromet,start=+60,duration=180", MON_10_LOCAL)
    assert silent.agency == "hydromet"
    msgs = Simulator(catalog, seed=1, start_ms=MON_10_LOCAL, incidents=[silent]).between(
        MON_10_LOCAL, MON_10_LOCAL + 300_000)
    water = [d["ts"] for d in docs(msgs) if d["feed"] == "water_level"]
    assert water and not [t for t in water if MON_10_LOCAL + 60_000 <= t < MON_10_LOCAL + 240_000]
    assert any(t >= MON_10_LOCAL + 240_000 for t in water)  # and it comes back
    others = [d for d in docs(msgs) if d["feed"] != "water_level"
              and MON_10_LOCAL + 60_000 <= d["ts"] < MON_10_LOCAL + 240_000]
    # every other body keeps sending (each feed reporting at least once a minute has readings in those 3 minutes)
    assert {d["feed"] for d in others} >= {f.id for f in catalog.feeds.values() if f.cadence_s <= 60} - {"water_level"}
    with pytest.raises(ValueError, match="agency='nobody' is not a body of the registry"):
        Simulator(catalog, seed=1, start_ms=MON_10_LOCAL, incidents=[parse_incident("silent:agency=nobody", 0)])
