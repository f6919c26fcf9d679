"""The registry of connected bodies (controlroom/data/agencies.yaml): pure parsing and look-ups, no I/O.

A body supplies feeds; a reading on Kafka names its sender in the header `agency`. The header is accepted
when its body supplies the reading's feed and, for a provincial center, when the reading is of its province.
One series (feed × province × dims) has one supplier: the province's center when it supplies the feed, else
the first central body listed for the feed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controlroom.errors import CatalogError

BodyType = Literal["ministry", "agency", "province", "corporation"]
BODY_TYPES: tuple[BodyType, ...] = ("ministry", "agency", "province", "corporation")


@dataclass(frozen=True, slots=True)
class Body:
    id: str
    type: BodyType
    name_vi: str
    name_en: str
    parent: str  # the body it reports to ('' for none)
    feeds: tuple[str, ...]
    contact: str  # a role address for escalation
    province: str = ""  # a provincial center's province code


@dataclass(frozen=True)
class Registry:
    bodies: dict[str, Body] = field(default_factory=dict)
    # feed → the bodies that may send it (the header check); (feed, province) → supplier for a provincial center
    senders: dict[str, frozenset[str]] = field(default_factory=dict)
    central: dict[str, str] = field(default_factory=dict)  # feed → its first central supplier
    local: dict[tuple[str, str], str] = field(default_factory=dict)  # (feed, province) → the province's center
    # (agency, feed) → the province it may send ('' for any): the worker's per-reading check, one dict lookup
    scope: dict[tuple[str | None, str], str] = field(default_factory=dict)  # a None (missing) agency: never found

    def supplier(self, feed: str, province: str) -> str:
        """Who delivers series (feed, province): '' when nobody does."""
        return self.local.get((feed, province)) or self.central.get(feed, "")

    def supplier_of_alert(self, event: Mapping[str, Any]) -> str:
        """The `agency` label of an alert event: the body a contract alert names (dims.agency), else the supplier of
        its series ('' for a feed-wide alert)."""
        named = (event.get("dims") or {}).get("agency")
        if isinstance(named, str) and named in self.bodies:
            return named
        return self.supplier(str(event.get("feed")), str(event.get("province")))

    def sender_denial(self, agency: str | None, feed: str, province: str) -> str | None:
        """Why `agency` may not send a reading of (feed, province); None when it may. Two dict look-ups."""
        if agency is None:
            return "header `agency` is missing"
        if agency not in self.senders.get(feed, ()):
            return f"header `agency` {agency[:64]!r} does not supply feed {feed}"
        body_province = self.bodies[agency].province
        if body_province and body_province != province:
            return f"header `agency` {agency} is the center of province {body_province}, not {province}"
        return None


def _body(raw: Any, where: str) -> Body:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: must be a mapping")
    try:
        body = Body(id=str(raw["id"]), type=raw.get("type", "agency"), name_vi=str(raw["name_vi"]),
                    name_en=str(raw["name_en"]), parent=str(raw.get("parent") or ""),
                    feeds=tuple(str(f) for f in raw.get("feeds") or ()), contact=str(raw.get("contact") or ""),
                    province=str(raw.get("province") or ""))
    except KeyError as exc:
        raise CatalogError(f"{where}: missing field {exc.args[0]!r}") from exc
    if body.type not in BODY_TYPES:
        raise CatalogError(f"{where}: type must be one of {', '.join(BODY_TYPES)}, not {body.type!r}")
    return body


def _centers(template: Any, provinces: Mapping[str, tuple[str, str]]) -> list[Body]:
    """One center per province from the `province_centers` template ({code}, {name_vi}, {name_en})."""
    if not template:
        return []
    if not isinstance(template, dict):
        raise CatalogError("province_centers: must be a mapping")
    out = []
    for code, (name_vi, name_en) in sorted(provinces.items()):
        fill = {"code": code, "name_vi": name_vi, "name_en": name_en}
        raw = {k: (v.format(**fill) if isinstance(v, str) else v) for k, v in template.items()}
        out.append(_body({**raw, "type": "province", "province": code}, f"province center {code}"))
    return out


def parse_registry(doc: Any, feeds: Iterable[str], provinces: Mapping[str, tuple[str, str]]) -> Registry:
    """Pure: the registry from the parsed agencies.yaml, checked against the feeds and provinces
    (`provinces`: code → (name_vi, name_en))."""
    doc = doc or {}
    known_feeds = set(feeds)
    bodies: dict[str, Body] = {}
    listed = [_body(raw, f"agency #{i}") for i, raw in enumerate(doc.get("agencies") or [])]
    for body in listed + _centers(doc.get("province_centers"), provinces):
        if body.id in bodies:
            raise CatalogError(f"agency {body.id!r} is defined twice")
        unknown = sorted(set(body.feeds) - known_feeds)
        if unknown:
            raise CatalogError(f"agency {body.id!r} names unknown feeds {unknown}")
        bodies[body.id] = body
    for body in bodies.values():
        if body.parent and body.parent not in bodies:
            raise CatalogError(f"agency {body.id!r} has unknown parent {body.parent!r}")
    senders: dict[str, set[str]] = {}
    central: dict[str, str] = {}
    local: dict[tuple[str, str], str] = {}
    for body in bodies.values():
        for feed in body.feeds:
            senders.setdefault(feed, set()).add(body.id)
            if body.province:
                local[(feed, body.province)] = body.id
            else:
                central.setdefault(feed, body.id)
    scope: dict[tuple[str | None, str], str] = {(b.id, feed): b.province for b in bodies.values() for feed in b.feeds}
    return Registry(bodies, {f: frozenset(s) for f, s in senders.items()}, central, local, scope)
