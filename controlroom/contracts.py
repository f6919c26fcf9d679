"""Feed contracts (controlroom/data/agencies.yaml, `contracts:`): what each body promised to deliver. Pure, no I/O.

A contract binds one body to one feed it supplies: the series it must cover (the provinces and dimension values
of the series whose supplier it is, Registry.supplier), its cadence, the readings per hour it should send (a band,
min–max) and the share of readings it promises within the lateness allowance (timeliness). Every (body, feed) that
supplies at least one series has one, generated from the feed's cadence in feeds.yaml by `defaults`; an entry of
`overrides` changes one contract (a narrower coverage, another cadence, an absolute band, another promise).

The quality score (README, "Feed contracts and the quality score") is computed from these in ClickHouse
(sinks/migrations/0017_contracts.sql); `hour_quality` is its formula in Python, the same one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controlroom.errors import CatalogError
from controlroom.registry import Registry

if TYPE_CHECKING:
    from controlroom.catalog import Feed

HOUR_S = 3600.0
DEFAULT_BAND = (0.8, 1.25)  # readings per hour: min and max as shares of what the cadence gives
DEFAULT_TIMELINESS_PCT = 99.0
# the score: a weighted mean of the four measures (each 0–1) over those that can be judged in the hour
WEIGHTS = {"completeness": 0.4, "timeliness": 0.2, "validity": 0.2, "volume": 0.2}
_OVERRIDE_FIELDS = ("agency", "feed", "cadence_s", "band", "readings_per_hour", "timeliness_pct", "provinces",
                    "dims")


@dataclass(frozen=True, slots=True)
class Contract:
    agency: str
    feed: str
    cadence_s: float
    per_hour_min: float  # readings per hour, the band
    per_hour_max: float
    timeliness_pct: float  # promised share of readings within the lateness allowance
    series: tuple[tuple[str, str], ...]  # (province, dims key) of every series it must cover

    @property
    def key(self) -> str:
        return f"{self.agency}/{self.feed}"

    @property
    def expected_per_hour(self) -> float:
        return len(self.series) * HOUR_S / self.cadence_s

    @property
    def provinces(self) -> tuple[str, ...]:
        return tuple(sorted({p for p, _ in self.series}))


def volume_share(readings: float, lo: float, hi: float) -> float:
    """1 inside the band; below it the share of its minimum reached, above it max / readings."""
    if lo <= readings <= hi:
        return 1.0
    return readings / lo if readings < lo else hi / readings


def hour_quality(completeness: float | None, timeliness: float | None, validity: float | None,
                 volume: float | None, promised_pct: float) -> float | None:
    """0–100 for one contract in one hour: the weighted mean (WEIGHTS) of the measures that can be judged (None:
    cannot, e.g. no reading to be late); timeliness counts as met (1) when at or above the promise."""
    kept = {"completeness": completeness, "validity": validity, "volume": volume,
            "timeliness": None if timeliness is None else min(1.0, timeliness * 100 / promised_pct)}
    judged = {k: v for k, v in kept.items() if v is not None}
    if not judged:
        return None
    return 100 * sum(WEIGHTS[k] * v for k, v in judged.items()) / sum(WEIGHTS[k] for k in judged)


def _number(raw: Any, where: str, *, lo: float = 0.0, hi: float | None = None, lo_open: bool = False) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise CatalogError(f"{where}: must be a number, not {raw!r}")
    x = float(raw)
    if (x <= lo if lo_open else x < lo) or (hi is not None and x > hi):
        raise CatalogError(f"{where}: must be {'>' if lo_open else '>='} {lo:g}"
                           + ("" if hi is None else f" and <= {hi:g}") + f", not {raw!r}")
    return x


def _pair(raw: Any, where: str) -> tuple[float, float]:
    if not isinstance(raw, list) or len(raw) != 2:
        raise CatalogError(f"{where}: must be [min, max], not {raw!r}")
    lo, hi = _number(raw[0], f"{where}[0]"), _number(raw[1], f"{where}[1]", lo_open=True)
    if lo > hi:
        raise CatalogError(f"{where}: min {lo:g} is above max {hi:g}")
    return lo, hi


def _series(feed: Feed, supplied: list[str], over: Mapping[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    """The series a contract covers: the supplier's provinces and every dims combination, narrowed by an override."""
    from controlroom.schema import dims_key  # schema imports the catalog, which imports this module

    provinces = supplied
    if "provinces" in over:
        wanted = over["provinces"]
        if not isinstance(wanted, list) or not wanted:
            raise CatalogError(f"{where}.provinces: must be a non-empty list of province codes")
        for i, code in enumerate(wanted):
            if code not in supplied:
                raise CatalogError(f"{where}.provinces[{i}]: {code!r} is not a province whose {feed.id} this body "
                                   f"supplies")
        provinces = sorted(set(wanted))
    combos = feed.dim_combinations()
    if "dims" in over:
        dims = over["dims"]
        if not isinstance(dims, dict):
            raise CatalogError(f"{where}.dims: must be a mapping of dimension → values")
        for name, values in dims.items():
            if name not in feed.dims:
                raise CatalogError(f"{where}.dims.{name}: feed {feed.id} has no dimension {name!r}")
            if not isinstance(values, list) or not values or any(v not in feed.dims[name] for v in values):
                raise CatalogError(f"{where}.dims.{name}: must be a non-empty list of its values "
                                   f"{list(feed.dims[name])}, not {values!r}")
        combos = [c for c in combos if all(c[n] in vs for n, vs in dims.items())]
    return tuple((p, dims_key(c)) for p in provinces for c in combos)


def _contract(agency: str, feed: Feed, supplied: list[str], defaults: Mapping[str, Any],
              over: Mapping[str, Any], where: str) -> Contract:
    series = _series(feed, supplied, over, where)
    cadence = _number(over.get("cadence_s", feed.cadence_s), f"{where}.cadence_s", lo_open=True)
    promised = _number(over.get("timeliness_pct", defaults["timeliness_pct"]), f"{where}.timeliness_pct",
                       lo_open=True, hi=100)
    if "readings_per_hour" in over and "band" in over:
        raise CatalogError(f"{where}: give band (shares of the cadence's count) or readings_per_hour, not both")
    if "readings_per_hour" in over:
        lo, hi = _pair(over["readings_per_hour"], f"{where}.readings_per_hour")
    else:
        share_lo, share_hi = _pair(over["band"], f"{where}.band") if "band" in over else defaults["band"]
        expected = len(series) * HOUR_S / cadence
        lo, hi = share_lo * expected, share_hi * expected
    return Contract(agency, feed.id, cadence, lo, hi, promised, series)


def _defaults(raw: Any) -> dict[str, Any]:
    raw = raw or {}
    if not isinstance(raw, dict) or set(raw) - {"band", "timeliness_pct"}:
        raise CatalogError(f"contracts.defaults: may hold band and timeliness_pct only, not {raw!r}")
    return {"band": _pair(raw["band"], "contracts.defaults.band") if "band" in raw else DEFAULT_BAND,
            "timeliness_pct": _number(raw.get("timeliness_pct", DEFAULT_TIMELINESS_PCT),
                                      "contracts.defaults.timeliness_pct", lo_open=True, hi=100)}


def _overrides(raw: Any, feeds: Mapping[str, Feed], supplied: Mapping[tuple[str, str], list[str]]
               ) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
    out: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
    if not isinstance(raw or [], list):
        raise CatalogError("contracts.overrides: must be a list")
    for i, over in enumerate(raw or []):
        where = f"contracts.overrides[{i}]"
        if not isinstance(over, dict):
            raise CatalogError(f"{where}: must be a mapping")
        unknown = sorted(set(over) - set(_OVERRIDE_FIELDS))
        if unknown:
            raise CatalogError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(_OVERRIDE_FIELDS)})")
        key = (str(over.get("agency")), str(over.get("feed")))
        if key[1] not in feeds:
            raise CatalogError(f"{where}.feed: unknown feed {over.get('feed')!r}")
        if key not in supplied:
            raise CatalogError(f"{where}.agency: {over.get('agency')!r} supplies no series of feed {key[1]} "
                               f"(agencies.yaml; a series' supplier is Registry.supplier)")
        if key in out:
            raise CatalogError(f"{where}: a second override of {key[0]}/{key[1]}")
        out[key] = (over, where)
    return out


def parse_contracts(doc: Any, feeds: Mapping[str, Feed], registry: Registry,
                    series_provinces: Iterable[tuple[str, str]]) -> dict[str, Contract]:
    """Pure: every contract, by key `agency/feed`, from the `contracts` section of agencies.yaml (None: defaults
    only). `series_provinces`: (feed, province) of every expected series."""
    if doc is not None and not isinstance(doc, dict):
        raise CatalogError("contracts: must be a mapping with defaults and overrides")
    doc = doc or {}
    unknown = sorted(set(doc) - {"defaults", "overrides"})
    if unknown:
        raise CatalogError(f"contracts.{unknown[0]}: unknown field (allowed: defaults, overrides)")
    supplied: dict[tuple[str, str], list[str]] = {}
    for feed, province in series_provinces:
        agency = registry.supplier(feed, province)
        if agency:
            supplied.setdefault((agency, feed), []).append(province)
    defaults = _defaults(doc.get("defaults"))
    overrides = _overrides(doc.get("overrides"), feeds, supplied)
    out: dict[str, Contract] = {}
    for (agency, feed), provinces in sorted(supplied.items()):
        over, where = overrides.get((agency, feed), ({}, f"contract {agency}/{feed}"))
        c = _contract(agency, feeds[feed], sorted(set(provinces)), defaults, over, where)
        out[c.key] = c
    return out
