"""One simulator engine for all 25 feeds, driven by the catalog. Pure: no Kafka, no clock.

Every series (feed, province, dims) reports on its feed's cadence (divided by a rate multiplier)
with jitter, its first reading within 10 s of the start so a fresh wall sees everything at once.
Values follow the feed's `sim` hints: a base level, per-province scale (the two big cities
largest), a daily and weekly rhythm in Vietnam time (UTC+7), noise and slow random-walk trends.
Seeded: the same seed and start time give the same messages, byte for byte.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from controlroom.catalog import NATIONAL, Catalog, Feed
from controlroom.communes import COMMUNE_DIM

VN = timedelta(hours=7)
MONEY_UNITS = {"VND", "USD"}
FIRST_READING_WITHIN_MS = 10_000
Message = tuple[str, bytes, bytes]  # (topic, key, value)


@dataclass(frozen=True, slots=True)
class Incident:
    """spike/drop: values × factor (+ add) · silent: nothing sent · malformed/late: a `fraction` of readings
    become bad or arrive `delay_s` late. Optional feed/province/agency filters (agency: the series whose supplier is
    that body, e.g. `silent:agency=hydromet` breaks its feed contract), and `dims` ("name=value" strings: a
    series matches when, for each name listed, its value is one listed); active in [start_ms, end_ms).
    `ramp_s`: a spike's factor grows from 1 to `factor` over that long (a river rising, not jumping)."""

    kind: str
    start_ms: int
    end_ms: int
    feed: str | None = None
    province: str | None = None
    factor: float = 1.0
    fraction: float = 1.0
    delay_s: float = 120.0
    dims: frozenset[str] = frozenset()
    add: float = 0.0
    ramp_s: float = 0.0
    agency: str | None = None

    KINDS = ("spike", "drop", "silent", "malformed", "late")

    def applies(self, feed: str, province: str, ts_ms: int, dims: dict[str, str] | None = None,
                agency: str = "") -> bool:
        if not (self.start_ms <= ts_ms < self.end_ms and (self.feed is None or self.feed == feed)
                and (self.province is None or self.province == province)
                and (self.agency is None or self.agency == agency)):
            return False
        if self.dims:
            names = {d.partition("=")[0] for d in self.dims}
            return all(f"{n}={(dims or {}).get(n)}" in self.dims for n in names)
        return True

    def factor_at(self, ts_ms: int) -> float:
        if self.ramp_s <= 0:
            return self.factor
        return 1 + (self.factor - 1) * min(1.0, (ts_ms - self.start_ms) / (self.ramp_s * 1000))


def parse_incident(spec: str, now_ms: int) -> Incident:
    """`kind:key=value,…`, e.g. `spike:feed=hotline_calls,province=01,factor=5,start=+60,duration=300`."""
    kind, _, rest = spec.partition(":")
    if kind not in Incident.KINDS:
        raise ValueError(f"incident kind {kind!r} is not one of {', '.join(Incident.KINDS)}")
    opts: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"incident option {part!r} must be key=value")
        opts[key.strip()] = value.strip()
    unknown = set(opts) - {"feed", "province", "agency", "factor", "fraction", "delay", "start", "duration"}
    if unknown:
        raise ValueError(f"unknown incident option(s): {', '.join(sorted(unknown))}")
    try:
        start = opts.get("start", "+0")
        start_ms = now_ms + int(float(start[1:]) * 1000) if start.startswith("+") else int(
            datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)
        duration_ms = int(float(opts.get("duration", "300")) * 1000)
        default_factor = {"spike": "5", "drop": "0.1"}.get(kind, "1")
        return Incident(kind, start_ms, start_ms + duration_ms, opts.get("feed"), opts.get("province"),
                        float(opts.get("factor", default_factor)), float(opts.get("fraction", "1" if kind in (
                            "spike", "drop", "silent") else "0.2")), float(opts.get("delay", "120")),
                        agency=opts.get("agency"))
    except ValueError as exc:
        raise ValueError(f"incident {spec!r}: {exc}") from exc


def province_scale(code: str, kind: str) -> float:
    """Hanoi and Ho Chi Minh City largest, other cities next; provinces spread deterministically."""
    if code in ("01", "79"):
        return 1.0
    if code == NATIONAL:
        return 1.0
    spread = random.Random(f"scale-{code}").uniform(0.12, 0.35)
    return spread * (1.6 if kind == "city" else 1.0)


def rhythm(name: str, ts_ms: int) -> float:
    local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC) + VN
    hour = local.hour + local.minute / 60
    weekend = local.weekday() >= 5
    if name == "office":
        level = 1.0 if 8 <= hour < 17 else 0.35 if 6 <= hour < 20 else 0.06
        return level * (0.3 if weekend else 1.0)
    if name == "evening":  # low at 4 am, peak around 19:00
        return 0.55 + 0.45 * math.exp(-((hour - 19) ** 2) / 8) - 0.15 * math.exp(-((hour - 4) ** 2) / 4)
    if name == "night":
        return 1.5 if hour < 6 or hour >= 21 else 1.0
    return 1.0  # flat; market hours are handled by `market_open`


def market_open(ts_ms: int) -> bool:
    local = datetime.fromtimestamp(ts_ms / 1000, tz=UTC) + VN
    return local.weekday() < 5 and 9 <= local.hour < 15


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation: fast, and close enough for a simulation
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass(slots=True)
class _Series:
    index: int
    feed: Feed
    province: str
    dims: dict[str, str]
    weight: float
    scale: float
    level: float  # gauges: current level (random walk)
    seq: int = 0
    communes: tuple[str, ...] = ()  # where its readings happen (feeds with communes: true); () for none
    commune_weights: tuple[float, ...] = ()  # cumulative: a few communes of a province see most of it
    agency: str = ""  # its supplier (Registry.supplier): the body it is sent as


COMMUNE_HOTSPOTS = 12  # communes of a province a counter's readings are spread over (weights 1, 1/2, 1/3…)


def commune_choice(catalog: Catalog, feed: Feed, province: str, key: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Where a series' readings happen: a gauge (a station) stands in one commune; a counter's events fall in a
    dozen communes of its province, a few of them far more often (the province page shows hotspots).
    Deterministic per `key`. ((), ()) for a feed without communes."""
    if not feed.communes:
        return (), ()
    rng = random.Random(f"communes-{key}")
    pool = [c.code for c in catalog.communes_by_province.get(province, ())]
    if not pool:
        return (), ()
    picked = rng.sample(pool, 1 if feed.kind == "gauge" else min(COMMUNE_HOTSPOTS, len(pool)))
    return tuple(picked), tuple(itertools.accumulate(1.0 / (n + 1) for n in range(len(picked))))


class Simulator:
    def __init__(self, catalog: Catalog, *, seed: int = 42, rate: float = 1.0, start_ms: int,
                 incidents: tuple[Incident, ...] | list[Incident] = ()) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.catalog = catalog
        self.seed = seed
        self.rate = rate
        self.incidents = tuple(incidents)
        for inc in self.incidents:
            if inc.agency is not None and inc.agency not in catalog.registry.bodies:
                raise ValueError(f"incident {inc.kind}: agency={inc.agency!r} is not a body of the registry "
                                 f"(agencies.yaml)")
        self.rng = random.Random(seed)
        self.incident_rng = random.Random(seed + 1)  # separate: incidents never change the underlying data
        self.commune_rng = random.Random(seed + 2)  # separate too: communes never change the values
        self.corrupted = 0
        self.series: list[_Series] = []
        self._heap: list[tuple[int, int]] = []  # (due_ms, series index)
        for i, (feed, province, dims) in enumerate(catalog.iter_series()):
            weight = 1.0
            for dim, value in dims.items():
                weights = feed.sim.get("dim_weights", {}).get(dim)
                if weights:
                    weight *= float(weights.get(value, 0.0)) * len(feed.dims[dim])
            kind = catalog.provinces[province].kind if province in catalog.provinces else "national"
            scale = 1.0 if feed.sim.get("flat_scale") else province_scale(province, kind)
            places, cum = commune_choice(catalog, feed, province, f"{seed}-{i}")
            self.series.append(_Series(i, feed, province, dims, weight, scale, float(feed.sim.get("base", 1.0))
                                       * scale, communes=places, commune_weights=cum,
                                       agency=catalog.registry.supplier(feed.id, province)))
            first = start_ms + self.rng.randrange(0, min(FIRST_READING_WITHIN_MS, int(feed.cadence_s * 1000)))
            self._heap.append((first, i))
        heapq.heapify(self._heap)

    def _value(self, s: _Series, ts_ms: int) -> float:
        feed, sim, rng = s.feed, s.feed.sim, self.rng
        base = float(sim.get("base", 1.0)) * s.scale * s.weight
        noise = float(sim.get("noise", 0.1))
        if feed.kind == "counter":
            mean = base * rhythm(str(sim.get("rhythm", "flat")), ts_ms)
            if feed.unit in MONEY_UNITS:
                value = mean * math.exp(rng.gauss(0, noise)) if rng.random() < 0.9 else 0.0
                return round(value, 0)
            return float(_poisson(rng, mean))
        if feed.id == "vn_index" and not market_open(ts_ms):
            return round(s.level, 2)  # the index holds still outside trading hours
        target = base * rhythm(str(sim.get("rhythm", "flat")), ts_ms)
        s.level += (target - s.level) * 0.1 + rng.gauss(0, noise) * target
        return round(s.level, 2)

    def _incident(self, kind: str, s: _Series, ts_ms: int) -> Incident | None:
        for inc in self.incidents:
            if inc.kind == kind and inc.applies(s.feed.id, s.province, ts_ms, s.dims, s.agency):
                return inc
        return None

    def due(self, now_ms: int) -> list[Message]:
        """Every message due at or before now_ms, in time order; advances the schedule."""
        out: list[Message] = []
        heap, rng = self._heap, self.rng
        while heap and heap[0][0] <= now_ms:
            ts, i = heapq.heappop(heap)
            s = self.series[i]
            period = s.feed.cadence_s * 1000 / self.rate
            heapq.heappush(heap, (ts + max(1, int(period * rng.uniform(0.9, 1.1))), i))
            value = self._value(s, ts)  # computed even when silent, so trends stay continuous
            if self._incident("silent", s, ts):
                continue
            s.seq += 1
            for kind in ("spike", "drop"):
                inc = self._incident(kind, s, ts)
                if inc:
                    value = round(value * inc.factor_at(ts) + inc.add, 2)
            value = min(max(value, s.feed.valid_min), s.feed.valid_max)
            event_ts = ts
            late = self._incident("late", s, ts)
            if late and self.incident_rng.random() < late.fraction:
                event_ts = ts - int(late.delay_s * 1000)
            dims = s.dims
            if s.communes:
                place = s.communes[0] if len(s.communes) == 1 else self.commune_rng.choices(
                    s.communes, cum_weights=s.commune_weights)[0]
                dims = {**s.dims, COMMUNE_DIM: place}
            doc = {"event_id": f"sim{self.seed}-{i}-{s.seq}", "feed": s.feed.id, "province": s.province,
                   "ts": event_ts, "value": value, "dims": dims, "source": f"sim:{s.feed.source}"}
            raw = orjson.dumps(doc)
            bad = self._incident("malformed", s, ts)
            if bad and self.incident_rng.random() < bad.fraction:
                raw = corrupt(doc, self.corrupted)
                self.corrupted += 1
            out.append((s.feed.topic, s.province.encode(), raw))
        return out

    def between(self, start_ms: int, end_ms: int, step_ms: int = 1000) -> list[Message]:
        out: list[Message] = []
        for t in range(start_ms, end_ms, step_ms):
            out.extend(self.due(t))
        return out


MALFORMED_KINDS = ("malformed", "missing_field", "wrong_type", "out_of_range", "unknown_province")


def corrupt(doc: dict[str, object], n: int) -> bytes:
    """A bad message of each kind in turn; each one must be rejected by validation."""
    kind = MALFORMED_KINDS[n % len(MALFORMED_KINDS)]
    if kind == "malformed":
        return orjson.dumps(doc)[:-7]
    bad = dict(doc)
    if kind == "missing_field":
        del bad["value"]
    elif kind == "wrong_type":
        bad["value"] = "n/a"
    elif kind == "out_of_range":
        bad["value"] = -1e18
    else:
        bad["province"] = "99"
    return orjson.dumps(bad)

