"""Reading validation: every rejection reason, legacy codes, the future limit, batched messages."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlroom.catalog import Catalog
from controlroom.schema import Reading, Rejection, decode_and_validate, decode_message, dims_key, parse_ts, validate

NOW = 1_795_000_000_000
GOOD: dict[str, Any] = {"event_id": "e1", "feed": "water_level", "province": "01", "ts": NOW - 1000,
                        "value": 412.5, "dims": {"station": "s1"}, "source": "station-01"}


def check(doc: Any, catalog: Catalog, topic_feed: str | None = "water_level") -> Reading | Rejection:
    return validate(doc, catalog, ref_ms=NOW, max_future_ms=300_000, topic_feed=topic_feed)


def test_good_reading(catalog: Catalog) -> None:
    r = check(GOOD, catalog)
    assert r == Reading("e1", "water_level", "01", NOW - 1000, 412.5, {"station": "s1"}, "station-01", "01")
    assert r.dims_key == "station=s1"


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


def test_malformed_bytes(catalog: Catalog) -> None:
    r = decode_and_validate(b"{oops", catalog, ref_ms=NOW, max_future_ms=0)
    assert isinstance(r, Rejection) and r.reason == "malformed"
    r = decode_and_validate(b"[1]", catalog, ref_ms=NOW, max_future_ms=0)
    assert isinstance(r, Rejection) and r.reason == "malformed"


def test_batched_message_gives_one_verdict_per_reading(catalog: Catalog) -> None:
    raw = orjson.dumps([GOOD, {**GOOD, "event_id": "e2", "value": -999}, {**GOOD, "event_id": "e3"}])
    verdicts = decode_message(raw, catalog, ref_ms=NOW, max_future_ms=300_000, topic_feed="water_level")
    assert [type(v).__name__ for v in verdicts] == ["Reading", "Rejection", "Reading"]


def test_dims_key_is_canonical() -> None:
    assert dims_key({"b": "2", "a": "1"}) == "a=1,b=2"
    assert dims_key({}) == ""
