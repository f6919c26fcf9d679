"""Keys, roles, agency scope and the rate limiter, on plain data."""

from __future__ import annotations

from importlib import resources

import pytest

from controlroom.catalog import Catalog
from controlroom.errors import CatalogError
from controlroom.security import (
    Principal,
    TokenBucket,
    hash_secret,
    ingest_denial,
    load_agencies,
    new_key,
    parse_token,
    secret_matches,
)


def test_new_keys_are_random_and_only_their_hash_is_kept() -> None:
    a, b = new_key(), new_key()
    assert a.token != b.token and a.key_id != b.key_id
    key_id, secret = parse_token(a.token)  # type: ignore[misc]
    assert key_id == a.key_id and len(secret) >= 40
    assert a.secret_hash == hash_secret(secret) and secret not in a.secret_hash
    assert secret_matches(secret, a.secret_hash) and not secret_matches(secret + "x", a.secret_hash)


@pytest.mark.parametrize("token", ["", "Bearer x", "cr_short_abc", "cr_0123456789ab", "xx_0123456789ab_s"])
def test_malformed_tokens(token: str) -> None:
    assert parse_token(token) is None


@pytest.mark.parametrize(("role", "allowed"), [
    ("viewer", {"viewer"}), ("operator", {"viewer", "operator"}),
    ("admin", {"viewer", "operator", "admin"}), ("agency", {"agency"}),
])
def test_role_hierarchy(role: str, allowed: set[str]) -> None:
    p = Principal("k" * 12, "n", role)  # type: ignore[arg-type]
    assert {r for r in ("viewer", "operator", "admin", "agency") if p.has_role(r)} == allowed  # type: ignore[arg-type]


def test_agency_scope(catalog: Catalog) -> None:
    agencies = load_agencies((resources.files("controlroom") / "data" / "agencies.yaml").read_text("utf-8"), catalog)
    covered = set().union(*(a.feeds for a in agencies.values()))
    assert covered == set(catalog.feeds)  # every feed has someone allowed to write it
    hydro = Principal("a" * 12, "hydro", "agency", agency="hydromet")
    assert ingest_denial(hydro, agencies, "water_level", "01") is None
    assert ingest_denial(hydro, agencies, "gold_price", "00") == "agency hydromet may not write feed gold_price"
    local = Principal("b" * 12, "hydro-hn", "agency", agency="hydromet", provinces=frozenset({"01"}))
    assert ingest_denial(local, agencies, "water_level", "01") is None
    assert ingest_denial(local, agencies, "water_level", "79") == "this key may not write province 79"


def test_agency_file_naming_an_unknown_feed_is_rejected(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="unknown feeds"):
        load_agencies("agencies: [{id: x, name_vi: x, name_en: x, feeds: [weather]}]", catalog)


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("k", now=0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take("other", now=0.0) == 0.0  # keys are independent
    assert bucket.take("k", now=0.5) == 0.0
