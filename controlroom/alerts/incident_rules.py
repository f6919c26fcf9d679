"""Incident types as data (controlroom/data/incidents.yaml): parsing and validation. Pure code.

An incident type says which alerts make up one situation (a flood: water level, rescues, emergency calls,
citizen reports) and when they count as one: at least `min_signals` distinct signals firing in one
province (or nationwide), begun within `window_s` of each other. Every error names the field it is
about, e.g. ``incident_types[2].signals[1].feed: unknown feed 'x'``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from controlroom.catalog import NATIONAL, Catalog, read_yaml
from controlroom.errors import ControlRoomError
from controlroom.schema import SEVERITIES

SCOPES = ("province", "national")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")
_TYPE_FIELDS = ("id", "version", "scope", "window_s", "min_signals", "anchors", "severity", "title", "signals",
                "description")
_SIGNAL_FIELDS = ("id", "rule", "feed", "dims")
TITLE_FIELDS = frozenset({"province", "province_vi", "province_en"})
TITLE_SEPARATORS = (" – ", " — ", " - ", ", ")


class IncidentRuleError(ControlRoomError):
    """An incident type is invalid; the message starts with the path of the offending field."""


@dataclass(frozen=True)
class Signal:
    id: str
    rule: str | None = None
    feed: str | None = None
    dims: Mapping[str, frozenset[str]] | None = None  # dimension -> values that count

    def matches(self, rule_id: str, feed: str, dims: Mapping[str, str]) -> bool:
        if self.rule is not None and self.rule != rule_id:
            return False
        if self.feed is not None and self.feed != feed:
            return False
        return all(dims.get(k) in values for k, values in (self.dims or {}).items())


@dataclass(frozen=True)
class IncidentType:
    id: str
    version: int
    scope: str
    window_s: float
    min_signals: int
    severity: str
    title_vi: str
    title_en: str
    signals: tuple[Signal, ...]
    anchors: frozenset[str] = frozenset()  # signal ids of which at least one must be among those that open it
    description: str = ""

    def signal_of(self, rule_id: str, feed: str, dims: Mapping[str, str]) -> Signal | None:
        """The first signal an alert stands for, or None when it is not part of this type."""
        return next((s for s in self.signals if s.matches(rule_id, feed, dims)), None)


def _fail(where: str, msg: str) -> IncidentRuleError:
    return IncidentRuleError(f"{where}: {msg}")


def _ident(v: Any, where: str) -> str:
    if not isinstance(v, str) or not _ID.match(v):
        raise _fail(where, "must be lowercase letters, digits, '_', '.' or '-' (1 to 80 chars)")
    return v


def _positive(v: Any, where: str, *, integer: bool = False) -> float:
    ok = isinstance(v, int) if integer else isinstance(v, int | float)
    if isinstance(v, bool) or not ok or not v > 0 or v != v or v == float("inf"):
        raise _fail(where, f"must be a positive {'integer' if integer else 'number'}")
    return float(v)


def _title(v: Any, where: str) -> tuple[str, str]:
    if not isinstance(v, dict) or set(v) != {"vi", "en"} or not all(isinstance(t, str) and t for t in v.values()):
        raise _fail(where, "must be {vi: text, en: text}")
    for lang, text in v.items():
        try:
            text.format(**{k: "" for k in TITLE_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            raise _fail(f"{where}.{lang}", f"unknown placeholder or bad format ({exc}); "
                                           f"allowed: {', '.join(sorted(TITLE_FIELDS))}") from exc
    return v["vi"], v["en"]


def _signal(raw: Any, where: str, catalog: Catalog) -> Signal:
    if not isinstance(raw, dict):
        raise _fail(where, "must be a mapping with id and at least one of rule, feed")
    for k in raw:
        if k not in _SIGNAL_FIELDS:
            raise _fail(f"{where}.{k}", f"unknown field (allowed: {', '.join(_SIGNAL_FIELDS)})")
    sid = _ident(raw.get("id"), f"{where}.id")
    rule = None if raw.get("rule") is None else _ident(raw["rule"], f"{where}.rule")
    feed_id = raw.get("feed")
    if feed_id is not None and feed_id not in catalog.feeds:
        raise _fail(f"{where}.feed", f"unknown feed {feed_id!r}")
    if rule is None and feed_id is None:
        raise _fail(where, "needs a rule, a feed, or both")
    dims: dict[str, frozenset[str]] | None = None
    if raw.get("dims") is not None:
        if not isinstance(raw["dims"], dict) or not raw["dims"]:
            raise _fail(f"{where}.dims", "must be a mapping of dimension -> list of values")
        if feed_id is None:
            raise _fail(f"{where}.dims", "needs a feed (dimensions belong to a feed)")
        feed = catalog.feeds[feed_id]
        dims = {}
        for name, values in raw["dims"].items():
            at = f"{where}.dims.{name}"
            if name not in feed.dims:
                raise _fail(at, f"feed {feed_id} has dims {sorted(feed.dims)}")
            if not isinstance(values, list) or not values or not all(isinstance(x, str) and x for x in values):
                raise _fail(at, "must be a non-empty list of strings (quote numbers: \"114\")")
            if name not in feed.open_dims:
                bad = [x for x in values if x not in feed.dims[name]]
                if bad:
                    raise _fail(at, f"{bad[0]!r} is not one of {', '.join(feed.dims[name])}")
            dims[str(name)] = frozenset(values)
    return Signal(sid, rule, feed_id, dims)


def parse_incident_type(raw: Any, where: str, catalog: Catalog) -> IncidentType:
    if not isinstance(raw, dict):
        raise _fail(where, "must be a mapping")
    for k in raw:
        if k not in _TYPE_FIELDS:
            raise _fail(f"{where}.{k}", f"unknown field (allowed: {', '.join(_TYPE_FIELDS)})")
    tid = _ident(raw.get("id"), f"{where}.id")
    version = int(_positive(raw.get("version"), f"{where}.version", integer=True))
    scope = raw.get("scope", "province")
    if scope not in SCOPES:
        raise _fail(f"{where}.scope", f"must be one of {', '.join(SCOPES)}")
    window_s = _positive(raw.get("window_s"), f"{where}.window_s")
    min_signals = int(_positive(raw.get("min_signals"), f"{where}.min_signals", integer=True))
    severity = raw.get("severity", "warning")
    if severity not in SEVERITIES:
        raise _fail(f"{where}.severity", f"must be one of {', '.join(SEVERITIES)}")
    title_vi, title_en = _title(raw.get("title"), f"{where}.title")
    raw_signals = raw.get("signals")
    if not isinstance(raw_signals, list) or not raw_signals:
        raise _fail(f"{where}.signals", "must be a non-empty list")
    signals = tuple(_signal(s, f"{where}.signals[{i}]", catalog) for i, s in enumerate(raw_signals))
    ids = [s.id for s in signals]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise _fail(f"{where}.signals[{ids.index(dup, ids.index(dup) + 1)}].id", f"{dup!r} is used twice")
    if min_signals > len(signals):
        raise _fail(f"{where}.min_signals", f"must be at most the number of signals ({len(signals)})")
    anchors = raw.get("anchors", [])
    if not isinstance(anchors, list) or not all(isinstance(a, str) for a in anchors):
        raise _fail(f"{where}.anchors", "must be a list of signal ids")
    for i, a in enumerate(anchors):
        if a not in ids:
            raise _fail(f"{where}.anchors[{i}]", f"{a!r} is not one of the signals ({', '.join(ids)})")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail(f"{where}.description", "must be text")
    return IncidentType(tid, version, scope, window_s, min_signals, severity, title_vi, title_en, signals,
                        frozenset(anchors), description)


def parse_incident_types(doc: Any, catalog: Catalog) -> list[IncidentType]:
    if not isinstance(doc, dict) or not isinstance(doc.get("incident_types"), list):
        raise _fail("incident_types", "the document must hold a list `incident_types`")
    types = [parse_incident_type(t, f"incident_types[{i}]", catalog) for i, t in enumerate(doc["incident_types"])]
    seen: set[str] = set()
    for i, t in enumerate(types):
        if t.id in seen:
            raise _fail(f"incident_types[{i}].id", f"{t.id!r} is used twice")
        seen.add(t.id)
    return types


def incident_type_name(title: str, catalog: Catalog, code: str, lang: str) -> str:
    """The incident's type in words: its title without the province part the correlator put in it
    (incidents.yaml titles read "Lũ lụt – {province_vi}"); the whole title when it has no such part."""
    p = catalog.provinces.get(code)
    names = [p.name_vi if lang == "vi" else p.name_en] if p else []
    names += ["toàn quốc", "nationwide"] if code == NATIONAL else []
    for name in names:
        for sep in TITLE_SEPARATORS:
            if title.lower().endswith((sep + name).lower()) and len(title) > len(sep + name):
                return title[: -len(sep + name)].strip()
    return title


def incident_types_file() -> Path:
    return Path(str(resources.files("controlroom") / "data" / "incidents.yaml"))


def load_incident_types(path: Path | None, catalog: Catalog) -> list[IncidentType]:
    """The incident types of a YAML file (None: the shipped one), all validated."""
    doc = read_yaml(path or incident_types_file(), "incidents.yaml", "incident types", IncidentRuleError)
    return parse_incident_types(doc, catalog)
