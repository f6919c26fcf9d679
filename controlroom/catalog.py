"""Feed catalog and province reference, loaded from data files and validated at start-up."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from controlroom.communes import COMMUNE_DIM, Commune, library_communes
from controlroom.contracts import Contract, parse_contracts
from controlroom.errors import CatalogError
from controlroom.registry import Registry, parse_registry

NATIONAL = "00"  # province code of national feeds; never a province
TOPIC_PREFIX = "feeds."  # a feed's readings travel on topic feeds.<feed id>

# Definitions shared by /overview, the live wall and the Grafana boards.
STALE_CADENCES = 3  # a series is reporting while its last reading is within 3 × its feed's cadence of now
# The public-service on-time rate: dossiers resolved with this dimension among all dossiers resolved.
ON_TIME_FEED, ON_TIME_DIM = "dvc_dossiers_resolved", "on_time=true"
# The headline feed of each category tile: a counter shows its sum over the last 5 minutes, a gauge its
# latest value (both exactly as /overview reports them, `last_5m.sum` and `latest_value`).
HEADLINE_FEEDS = {
    "daily_news": "press_mentions",
    "focal_issues": "hotline_calls",
    "international_indices": "vn_index",
    "socio_economic": "business_registrations",
    "regional_local": "citizen_feedback",
    "public_services": "dvc_dossiers_received",
    "direction_operations": "gov_tasks",
}


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    name_vi: str
    name_en: str


@dataclass(frozen=True, slots=True)
class Feed:
    id: str
    category: str
    name_vi: str
    name_en: str
    source: str
    unit: str
    kind: Literal["counter", "gauge"]
    scope: Literal["provincial", "national"]
    # per dimension, its known values: every allowed value of a closed dimension, the example values
    # of an open one (the series the simulator sends and the overview expects)
    dims: dict[str, tuple[str, ...]]
    cadence_s: float
    valid_min: float
    valid_max: float
    sim: dict[str, Any] = field(default_factory=dict)
    open_dims: frozenset[str] = frozenset()  # dimensions that take any value (new stations appear)
    # readings may name their commune (dims.commune, validated against the province); not part of the series
    communes: bool = False

    @property
    def topic(self) -> str:
        return f"{TOPIC_PREFIX}{self.id}"

    def dim_combinations(self) -> list[dict[str, str]]:
        """Every series' dims of this feed (one empty dict when the feed has no dims)."""
        names = sorted(self.dims)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*(self.dims[n] for n in names))]


@dataclass(frozen=True, slots=True)
class Province:
    code: str
    name_vi: str
    name_en: str
    kind: str
    lat: float
    lon: float
    legacy_codes: tuple[str, ...]


def feed_provinces(feed: Feed, provinces: Iterable[str]) -> list[str]:
    """The provinces of a feed's series: every province, or the national code for a national feed."""
    return [NATIONAL] if feed.scope == "national" else sorted(provinces)


@dataclass(frozen=True)
class Catalog:
    categories: dict[str, Category]
    feeds: dict[str, Feed]
    provinces: dict[str, Province]
    legacy_to_current: dict[str, str]
    communes: dict[str, Commune] = field(default_factory=dict)  # by commune code (five digits)
    registry: Registry = field(default_factory=Registry)  # connected bodies (agencies.yaml); empty: nobody sends
    contracts: dict[str, Contract] = field(default_factory=dict)  # by `agency/feed` (agencies.yaml, `contracts:`)

    @cached_property
    def communes_by_province(self) -> dict[str, tuple[Commune, ...]]:
        """Each province's communes, by code (computed once: the simulator and the province page ask often)."""
        out: dict[str, list[Commune]] = {}
        for c in sorted(self.communes.values(), key=lambda c: c.code):
            out.setdefault(c.province, []).append(c)
        return {p: tuple(cs) for p, cs in out.items()}

    def feed_for_topic(self, topic: str) -> Feed | None:
        return self.feeds.get(topic.removeprefix(TOPIC_PREFIX)) if topic.startswith(TOPIC_PREFIX) else None

    def current_province(self, code: str) -> str | None:
        """Map a current or legacy (pre-2025) province code to the current code; None when unknown."""
        if code in self.provinces:
            return code
        return self.legacy_to_current.get(code)

    def series_provinces(self, feed: Feed) -> list[str]:
        return feed_provinces(feed, self.provinces)

    def iter_series(self) -> Iterator[tuple[Feed, str, dict[str, str]]]:
        """Every expected series: (feed, province, dims)."""
        for feed in self.feeds.values():
            for province in self.series_provinces(feed):
                for dims in feed.dim_combinations():
                    yield feed, province, dims

    @property
    def topics(self) -> list[str]:
        return [f.topic for f in self.feeds.values()]


OPEN_DIM_SHAPE = "{open: true, examples: [v1, v2]}"


def _parse_dims(raw: Any, where: str) -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    """A feed's `dims` → (known values per dimension, the open dimensions).

    A closed dimension is the list of its allowed values (`on_time: ["true", "false"]`); an open one
    takes any value and lists a few examples (`station: {open: true, examples: [s1, s2]}`).
    """
    if raw is None:
        return {}, frozenset()
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: dims must be a mapping of dimension → values, not {type(raw).__name__}")
    dims: dict[str, tuple[str, ...]] = {}
    open_dims: set[str] = set()
    for name, spec in raw.items():
        at = f"{where}: dims.{name}"
        if not isinstance(name, str) or not name:
            raise CatalogError(f"{at}: a dimension name must be a non-empty string")
        if isinstance(spec, list):
            values = spec
        elif isinstance(spec, dict) and spec.get("open") is True and set(spec) == {"open", "examples"}:
            values = spec["examples"]
            open_dims.add(name)
        else:
            raise CatalogError(f"{at}: must be the list of its allowed values (closed) or {OPEN_DIM_SHAPE} "
                               f"(open), not {spec!r}")
        if not isinstance(values, list) or not values:
            raise CatalogError(f"{at}: needs a non-empty list of values")
        if not all(isinstance(v, str) and v for v in values):
            raise CatalogError(f"{at}: values must be non-empty strings (quote true, false and numbers: "
                               f"\"true\", \"111\"), not {values!r}")
        if len(set(values)) != len(values):
            raise CatalogError(f"{at}: a value is listed twice in {values!r}")
        dims[name] = tuple(values)
    return dims, frozenset(open_dims)


def _parse_feed(raw: dict[str, Any], categories: dict[str, Category]) -> Feed:
    where = f"feed {raw.get('id', '?')!r}"
    dims, open_dims = _parse_dims(raw.get("dims"), where)
    try:
        lo, hi = (float(v) for v in raw["valid"])
        feed = Feed(
            id=str(raw["id"]),
            category=str(raw["category"]),
            name_vi=str(raw["name_vi"]),
            name_en=str(raw["name_en"]),
            source=str(raw["source"]),
            unit=str(raw["unit"]),
            kind=raw["kind"],
            scope=raw["scope"],
            dims=dims,
            cadence_s=float(raw["cadence_s"]),
            valid_min=lo,
            valid_max=hi,
            sim=dict(raw.get("sim") or {}),
            open_dims=open_dims,
            communes=raw.get("communes", False),
        )
    except KeyError as exc:
        raise CatalogError(f"{where}: missing field {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    if feed.kind not in ("counter", "gauge"):
        raise CatalogError(f"{where}: kind must be counter or gauge, not {feed.kind!r}")
    if feed.scope not in ("provincial", "national"):
        raise CatalogError(f"{where}: scope must be provincial or national, not {feed.scope!r}")
    if not isinstance(feed.communes, bool) or (feed.communes and feed.scope != "provincial"):
        raise CatalogError(f"{where}: communes must be true or false, and true only for a provincial feed")
    if COMMUNE_DIM in feed.dims:
        raise CatalogError(f"{where}: dims.commune is reserved: set `communes: true` instead")
    if feed.category not in categories:
        raise CatalogError(f"{where}: unknown category {feed.category!r}")
    if feed.cadence_s <= 0 or lo >= hi:
        raise CatalogError(f"{where}: cadence must be > 0 and valid range min < max")
    if not feed.id.replace("_", "").isalnum():
        raise CatalogError(f"{where}: id may hold only letters, digits and '_' (it names a topic)")
    return feed


def parse_catalog(feeds_doc: dict[str, Any], provinces_rows: list[dict[str, str]],
                  communes: tuple[Commune, ...] = (), agencies_doc: dict[str, Any] | None = None) -> Catalog:
    """Pure: build and validate a Catalog from parsed documents (and the communes, from the library; without
    `agencies_doc`, no body may send)."""
    categories = {str(c["id"]): Category(str(c["id"]), str(c["name_vi"]), str(c["name_en"]))
                  for c in feeds_doc.get("categories", [])}
    feeds: dict[str, Feed] = {}
    for raw in feeds_doc.get("feeds", []):
        feed = _parse_feed(raw, categories)
        if feed.id in feeds:
            raise CatalogError(f"feed {feed.id!r} is defined twice")
        feeds[feed.id] = feed
    provinces: dict[str, Province] = {}
    legacy: dict[str, str] = {}
    for row in provinces_rows:
        code = row["code"].strip()
        if code == NATIONAL:
            raise CatalogError("province code 00 is reserved for national feeds")
        legacy_codes = tuple(c.strip() for c in row["merged_from_legacy_codes"].split(";") if c.strip())
        provinces[code] = Province(code, row["name_vi"], row["name_en"], row["kind"],
                                   float(row["center_lat"]), float(row["center_lon"]), legacy_codes)
        for old in legacy_codes:
            if old in legacy and legacy[old] != code:
                raise CatalogError(f"legacy province code {old} is claimed by {legacy[old]} and {code}")
            legacy[old] = code
    for old, new in legacy.items():
        if old in provinces and old != new:
            raise CatalogError(f"legacy code {old} maps to {new} but is also a current province code")
    by_code: dict[str, Commune] = {}
    for c in communes:
        if c.province not in provinces:
            raise CatalogError(f"commune {c.code} ({c.name}) names province {c.province}, not in provinces.csv")
        by_code[c.code] = c
    registry = parse_registry(agencies_doc, feeds, {c: (p.name_vi, p.name_en) for c, p in provinces.items()})
    series = [(f.id, p) for f in feeds.values() for p in feed_provinces(f, provinces)]
    contracts = parse_contracts((agencies_doc or {}).get("contracts"), feeds, registry, series)
    return Catalog(categories, feeds, provinces, legacy, by_code, registry, contracts)


def _data_file(name: str) -> Path:
    return Path(str(resources.files("controlroom") / "data" / name))


def read_yaml(path: Path | None, shipped: str, what: str, error: type[Exception]) -> Any:
    """The YAML document at `path`, or the shipped controlroom/data/<shipped>; an unreadable one raises `error`
    naming the file and what it should have held."""
    path = path or _data_file(shipped)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"{path}: cannot read {what}: {exc}") from exc


def load_catalog(feeds_path: Path | None = None, provinces_path: Path | None = None,
                 agencies_path: Path | None = None) -> Catalog:
    feeds_path = feeds_path or _data_file("feeds.yaml")
    provinces_path = provinces_path or _data_file("provinces.csv")
    agencies_path = agencies_path or _data_file("agencies.yaml")
    try:
        feeds_doc = yaml.safe_load(feeds_path.read_text(encoding="utf-8"))
        agencies_doc = yaml.safe_load(agencies_path.read_text(encoding="utf-8"))
        with provinces_path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"cannot read catalog: {exc}") from exc
    return parse_catalog(feeds_doc, rows, library_communes(), agencies_doc)


@cache
def default_catalog() -> Catalog:
    return load_catalog()
