"""API keys, roles, agency scope and rate limits: pure logic (storage and HTTP live in api/).

A key is shown once as `cr_<key_id>_<secret>`; only sha256(secret) is stored. The secret is 256
random bits, so a fast hash is enough (no password to brute-force), and comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

import yaml

from controlroom.catalog import Catalog
from controlroom.registry import parse_registry

Role = Literal["viewer", "operator", "admin", "agency"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin", "agency")
# viewer < operator < admin; an agency key only ingests (it reads nothing)
_RANK = {"viewer": 1, "operator": 2, "admin": 3, "agency": 0}
TOKEN_PREFIX = "cr_"  # noqa: S105 (the visible prefix of every key, not a secret)


@dataclass(frozen=True, slots=True)
class Agency:
    id: str
    name_vi: str
    name_en: str
    feeds: frozenset[str]


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    name: str
    role: Role
    agency: str = ""
    provinces: frozenset[str] = field(default_factory=frozenset)  # empty = every province

    def has_role(self, required: Role) -> bool:
        if required == "agency":
            return self.role == "agency"
        return self.role != "agency" and _RANK[self.role] >= _RANK[required]


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    token: str  # shown once
    secret_hash: str


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id, f"{TOKEN_PREFIX}{key_id}_{secret}", hash_secret(secret))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key_id, secret) from `cr_<key_id>_<secret>`, or None when it is not of that form."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def ingest_denial(principal: Principal, agencies: dict[str, Agency], feed: str, province: str) -> str | None:
    """Why this agency key may not write (feed, province); None when it may."""
    agency = agencies.get(principal.agency)
    if agency is None:
        return f"key is bound to unknown agency {principal.agency!r}"
    if feed not in agency.feeds:
        return f"agency {agency.id} may not write feed {feed}"
    if principal.provinces and province not in principal.provinces:
        return f"this key may not write province {province}"
    return None


def load_agencies(text: str, catalog: Catalog) -> dict[str, Agency]:
    """The ingest scope of every body of the registry (agencies.yaml), province centers included."""
    names = {code: (p.name_vi, p.name_en) for code, p in catalog.provinces.items()}
    registry = parse_registry(yaml.safe_load(text), catalog.feeds, names)
    return {b.id: Agency(b.id, b.name_vi, b.name_en, frozenset(b.feeds)) for b in registry.bodies.values()}


class TokenBucket:
    """Per-key rate limit: `rate` requests per second with bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def take(self, key: str, now: float | None = None, cost: float = 1.0) -> float:
        """0 when allowed; otherwise the seconds to wait before retrying."""
        now = time.monotonic() if now is None else now
        tokens, at = self.tokens.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= cost:
            self.tokens[key] = (tokens - cost, now)
            return 0.0
        self.tokens[key] = (tokens, now)
        return (cost - tokens) / self.rate
