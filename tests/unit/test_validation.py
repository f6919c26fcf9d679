"""Reading validation: every rejection reason, legacy codes, the time limits, closed dims, batched messages."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlroom.catalog import Catalog
from controlroom.schema import (
    DEFAULT_MAX_PAST_MS,
    MIN_TS_MS,
    Reading,
    Rejection,
    decode_and_validate,
    decode_message,
    dims_key,
    parse_ts,
    validate,
)
from controlroom.settings import Settings

NOW = 1_795_000_000_000
HM = "hydromet"  # the supplier of water_level (its readings carry it in header `agency`)
PAST_LIMIT = NOW - 400 * 86_400_000  # the oldest event time MAX_PAST_S (400 days) lets through
GOOD: dict[str, Any] = {"event_id": "e1", "feed": "water_level", "province": "01", "ts": NOW - 1000,
                        "value": 412.5, "dims": {"station": "s1"}, "source": "station-01"}


def sender(doc: Any, catalog: Catalog) -> str:
    """The registry's supplier of the document's series: the header a well-behaved producer sends."""
    feed, province = (doc.get("feed"), doc.get("province")) if isinstance(doc, dict) else (None, None)
    current = catalog.current_province(province) if isinstance(province, str) else None
    return catalog.registry.supplier(feed, current or "") if isinstance(feed, str) else ""


def check(doc: Any, catalog: Catalog, topic_feed: str | None = "water_level") -> Reading | Rejection:
    return validate(doc, catalog, ref_ms=NOW, max_future_ms=300_000, topic_feed=topic_feed,
                    agency=sender(doc, catalog))


def test_good_reading(catalog: Catalog) -> None:
    r = check(GOOD, catalog)
    assert r == Reading("e1", "water_level", "01", NOW - 1000, 412.5, {"station": "s1"}, "station-01", "01",
                        agency="hydromet")
    assert r.dims_key == "station=s1"


def test_the_sender_header_is_checked_against_the_registry(catalog: Catalog) -> None:
    def verdict(doc: dict[str, Any], agency: str | None) -> tuple[str, str] | str:
        r = validate(doc, catalog, ref_ms=NOW, max_future_ms=0, agency=agency)
        return (r.reason, r.field) if isinstance(r, Rejection) else r.agency

    assert verdict(GOOD, None) == ("missing_agency", "header.agency")
    assert verdict(GOOD, "moh") == ("wrong_agency", "header.agency")  # the Ministry of Health sends no water level
    assert verdict(GOOD, "nobody") == ("wrong_agency", "header.agency")
    assert verdict(GOOD, "hydromet") == "hydromet"
    citizen = {**GOOD, "feed": "citizen_feedback", "value": 3, "dims": {"topic": "traffic"}}
    assert verdict(citizen, "ioc_01") == "ioc_01"  # a province's center sends its own province
    assert verdict({**citizen, "province": "79"}, "ioc_01") == ("wrong_agency", "header.agency")
    r = validate({**citizen, "province": "79"}, catalog, ref_ms=NOW, max_future_ms=0, agency="ioc_01")
    assert isinstance(r, Rejection) and r.detail == "header `agency` ioc_01 is the center of province 01, not 79"
    missing = validate(GOOD, catalog, ref_ms=NOW, max_future_ms=0)
    assert isinstance(missing, Rejection) and missing.detail == "header `agency` is missing"


def test_legacy_province_is_mapped_and_kept(catalog: Catalog) -> None:
    r = check({**GOOD, "province": "77"}, catalog)
    assert isinstance(r, Reading) and (r.province, r.province_original) == ("79", "77")


def test_iso_timestamps(catalog: Catalog) -> None:
    assert parse_ts("2026-01-01T07:00:00+07:00") == parse_ts("2026-01-01T00:00:00Z") == 1_767_225_600_000
    assert parse_ts("2026-01-01T00:00:00") is None  # no timezone: ambiguous, rejected
    assert parse_ts(True) is None and parse_ts(float("nan")) is None


@pytest.mark.parametrize(("change", "reason", "field"), [
    ({"event_id": None}, "wrong_type", "event_id"),
    ({"event_id": ""}, "wrong_type", "event_id"),
    ({"event_id": "   "}, "wrong_type", "event_id"),
    ({"event_id": "\t\n"}, "wrong_type", "event_id"),
    ({"event_id": " e1"}, "wrong_type", "event_id"),
    ({"event_id": "e1\n"}, "wrong_type", "event_id"),
    ({"event_id": "e" * 129}, "wrong_type", "event_id"),
    ({"event_id": 17}, "wrong_type", "event_id"),
    ({"feed": "weather"}, "unknown_feed", "feed"),
    ({"feed": "electricity_load", "dims": {}}, "feed_topic_mismatch", "feed"),
    ({"province": "99"}, "unknown_province", "province"),
    ({"province": 1}, "wrong_type", "province"),
    ({"value": "412"}, "wrong_type", "value"),
    ({"value": True}, "wrong_type", "value"),
    ({"value": 99_999}, "out_of_range", "value"),
    ({"value": -501}, "out_of_range", "value"),
    ({"ts": "yesterday"}, "bad_timestamp", "ts"),
    ({"ts": NOW + 301_000}, "in_future", "ts"),
    ({"ts": -1}, "too_old", "ts"),  # 1969-12-31T23:59:59.999Z
    ({"ts": "1969-12-31T23:59:59Z"}, "too_old", "ts"),
    ({"ts": PAST_LIMIT - 1}, "too_old", "ts"),
    ({"dims": {"station": ""}}, "wrong_type", "dims.station"),
    ({"dims": {"river": "red"}}, "unknown_dim", "dims.river"),
    ({"dims": {"station": 5}}, "wrong_type", "dims.station"),
    ({"dims": ["s1"]}, "wrong_type", "dims"),
    ({"source": 5}, "wrong_type", "source"),
])
def test_each_rejection_reason_names_the_field(catalog: Catalog, change: dict[str, Any], reason: str,
                                               field: str) -> None:
    r = check({**GOOD, **change}, catalog)
    assert isinstance(r, Rejection), r
    assert (r.reason, r.field) == (reason, field)
    assert r.detail


@pytest.mark.parametrize("missing", ["event_id", "feed", "province", "ts", "value"])
def test_missing_field(catalog: Catalog, missing: str) -> None:
    doc = {k: v for k, v in GOOD.items() if k != missing}
    assert check(doc, catalog) == Rejection("missing_field", missing, "is required")


def test_scope_national_feed_takes_00(catalog: Catalog) -> None:
    gold = {**GOOD, "feed": "gold_price", "value": 150_000_000, "dims": {"side": "buy"}}
    assert isinstance(check({**gold, "province": "00"}, catalog, "gold_price"), Reading)
    r = check({**gold, "province": "01"}, catalog, "gold_price")
    assert isinstance(r, Rejection) and r.reason == "scope_mismatch"
    r = check({**GOOD, "province": "00"}, catalog)
    assert isinstance(r, Rejection) and r.reason == "unknown_province"


def test_future_limit_is_inclusive(catalog: Catalog) -> None:
    assert isinstance(check({**GOOD, "ts": NOW + 300_000}, catalog), Reading)


def test_event_id_edges_accepted(catalog: Catalog) -> None:
    for event_id in ("e" * 128, "x", "hydro 01 s1"):  # inner whitespace is fine: only the ends are checked
        r = check({**GOOD, "event_id": event_id}, catalog)
        assert isinstance(r, Reading) and r.event_id == event_id


def test_event_id_rejection_says_what_is_wrong(catalog: Catalog) -> None:
    details = {eid: check({**GOOD, "event_id": eid}, catalog) for eid in ("", " e1", "e" * 129)}
    assert all(isinstance(r, Rejection) for r in details.values())
    assert "empty" in details[""].detail  # type: ignore[union-attr]
    assert "whitespace" in details[" e1"].detail  # type: ignore[union-attr]
    assert "129 chars" in details["e" * 129].detail  # type: ignore[union-attr]


def test_past_limit_is_inclusive_and_follows_the_reference_time(catalog: Catalog) -> None:
    assert Settings().max_past_s * 1000 == DEFAULT_MAX_PAST_MS == 400 * 86_400_000
    assert isinstance(check({**GOOD, "ts": PAST_LIMIT}, catalog), Reading)
    # the limit counts from ref_ms (the Kafka message timestamp), not from the wall clock
    old = {**GOOD, "ts": NOW - 10 * 86_400_000}
    ten_days = 10 * 86_400_000
    assert isinstance(validate(old, catalog, ref_ms=NOW, max_future_ms=0, agency=HM, max_past_ms=ten_days), Reading)
    r = validate(old, catalog, ref_ms=NOW + 1, max_future_ms=0, agency=HM, max_past_ms=10 * 86_400_000)
    assert isinstance(r, Rejection) and (r.reason, r.field) == ("too_old", "ts")
    assert "10.0 days in the past (limit 10 days)" in r.detail


def test_nothing_before_2000_whatever_max_past_allows(catalog: Catalog) -> None:
    forever = 10**15
    at_2000 = {**GOOD, "ts": "2000-01-01T00:00:00Z"}
    assert isinstance(validate(at_2000, catalog, ref_ms=NOW, max_future_ms=0, agency=HM, max_past_ms=forever), Reading)
    r = validate({**GOOD, "ts": MIN_TS_MS - 1}, catalog, ref_ms=NOW, max_future_ms=0, agency=HM, max_past_ms=forever)
    assert isinstance(r, Rejection) and (r.reason, r.field) == ("too_old", "ts")
    assert "before 2000-01-01" in r.detail
    r = validate({**GOOD, "ts": -(10**20)}, catalog, ref_ms=NOW, max_future_ms=0, agency=HM, max_past_ms=forever)
    assert isinstance(r, Rejection) and r.reason == "too_old"


DOSSIERS = {**GOOD, "feed": "dvc_dossiers_resolved", "value": 3, "dims": {"on_time": "true"}}
REPORTS = {**GOOD, "feed": "report_submissions", "value": 1, "dims": {"on_time": "false", "report_code": "BC01"}}
GOLD = {**GOOD, "feed": "gold_price", "province": "00", "value": 150_000_000, "dims": {"side": "sell"}}


@pytest.mark.parametrize(("doc", "dim"), [
    ({**DOSSIERS, "dims": {"on_time": "maybe"}}, "on_time"),
    ({**DOSSIERS, "dims": {"on_time": "True"}}, "on_time"),  # values are exact: no case folding
    ({**REPORTS, "dims": {"on_time": "1", "report_code": "BC01"}}, "on_time"),
    ({**GOLD, "dims": {"side": "BUY"}}, "side"),
    ({**GOOD, "feed": "press_mentions", "value": 2, "dims": {"topic": "economy", "sentiment": "angry"}}, "sentiment"),
])
def test_value_outside_a_closed_dim_is_rejected(catalog: Catalog, doc: dict[str, Any], dim: str) -> None:
    r = check(doc, catalog, doc["feed"])
    assert isinstance(r, Rejection), r
    assert (r.reason, r.field) == ("unknown_dim_value", f"dims.{dim}")
    assert "is not one of" in r.detail


@pytest.mark.parametrize("doc", [
    DOSSIERS, REPORTS, GOLD,
    {**GOOD, "dims": {"station": "s9"}},  # a new station: station is open
    {**GOOD, "dims": {"station": "S1"}},  # open values are taken as sent (S1 is its own series)
    {**REPORTS, "dims": {"on_time": "true", "report_code": "BC99"}},  # open next to closed
    {**GOOD, "feed": "hotline_calls", "value": 4, "dims": {"line": "1900"}},
])
def test_listed_values_and_open_dims_are_accepted(catalog: Catalog, doc: dict[str, Any]) -> None:
    r = check(doc, catalog, doc["feed"])
    assert isinstance(r, Reading), r
    assert r.dims == doc["dims"]


def test_kafka_path_gives_the_same_verdicts(catalog: Catalog) -> None:
    bad = [{**GOOD, "event_id": " e1"}, {**GOOD, "ts": -1}, {**GOOD, "event_id": "e2", "ts": PAST_LIMIT - 1},
           {**DOSSIERS, "feed": "water_level", "dims": {"station": "s9"}}]
    raw = orjson.dumps(bad)
    verdicts = decode_message(raw, catalog, ref_ms=NOW, max_future_ms=300_000, max_past_ms=DEFAULT_MAX_PAST_MS,
                              topic_feed="water_level", agency="hydromet")
    assert [(v.reason, v.field) if isinstance(v, Rejection) else "ok" for v in verdicts] == [
        ("wrong_type", "event_id"), ("too_old", "ts"), ("too_old", "ts"), "ok"]
    r = decode_and_validate(orjson.dumps({**DOSSIERS, "dims": {"on_time": "no"}}), catalog, ref_ms=NOW,
                            max_future_ms=0, topic_feed="dvc_dossiers_resolved", agency="public_service_portal")
    assert isinstance(r, Rejection) and (r.reason, r.field) == ("unknown_dim_value", "dims.on_time")


def test_malformed_bytes(catalog: Catalog) -> None:
    r = decode_and_validate(b"{oops", catalog, ref_ms=NOW, max_future_ms=0)
    assert isinstance(r, Rejection) and r.reason == "malformed"
    r = decode_and_validate(b"[1]", catalog, ref_ms=NOW, max_future_ms=0)
    assert isinstance(r, Rejection) and r.reason == "malformed"


def test_batched_message_gives_one_verdict_per_reading(catalog: Catalog) -> None:
    raw = orjson.dumps([GOOD, {**GOOD, "event_id": "e2", "value": -999}, {**GOOD, "event_id": "e3"}])
    verdicts = decode_message(raw, catalog, ref_ms=NOW, max_future_ms=300_000, topic_feed="water_level",
                              agency="hydromet")
    assert [type(v).__name__ for v in verdicts] == ["Reading", "Rejection", "Reading"]
    # one header for the whole message: without it every reading of the message is refused
    verdicts = decode_message(raw, catalog, ref_ms=NOW, max_future_ms=300_000, topic_feed="water_level", agency=None)
    assert [v.reason for v in verdicts if isinstance(v, Rejection)] == ["missing_agency", "out_of_range",
                                                                        "missing_agency"]  # content first


def test_dims_key_is_canonical() -> None:
    assert dims_key({"b": "2", "a": "1"}) == "a=1,b=2"
    assert dims_key({}) == ""


def test_sink_conversion_applies_the_same_limits(catalog: Catalog) -> None:
    from sinks.rows import Record, convert

    def rec(offset: int, doc: dict[str, Any]) -> Record:
        return Record("feeds.water_level", 0, offset, NOW, orjson.dumps(doc), "hydromet")

    docs = [GOOD, {**GOOD, "event_id": ""}, {**GOOD, "event_id": "e2", "ts": -1},
            {**GOOD, "event_id": "e3", "ts": NOW - 2 * 86_400_000},
            {**GOOD, "event_id": "e4", "dims": {"station": "s9"}}]
    out = convert([rec(i, d) for i, d in enumerate(docs)], catalog, max_future_ms=300_000, ingested_ms=NOW,
                  max_past_ms=86_400_000)
    assert out.rejected == 3
    assert out.tables["readings"].column("event_id").to_pylist() == ["e1", "e4"]
