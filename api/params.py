"""Pure validation of /series parameters into a SeriesQuery; errors name the offending field."""

from __future__ import annotations

from api.series_sql import SeriesQuery, Source
from controlroom.catalog import NATIONAL, Catalog
from controlroom.schema import parse_ts

DEFAULT_RANGE_MS = 3_600_000  # last hour
MAX_POINTS = 10_000  # a chart wider than this many buckets is a mistake, not a request
MIN_STEP_S, MAX_STEP_S = 1, 86_400
AGG_WINDOW_S = 60


class ParamError(Exception):
    """A bad query parameter; `field` is its name as the client sent it."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__(f"{field}: {msg}")
        self.field = field
        self.msg = msg

    def detail(self) -> list[dict[str, object]]:
        return [{"loc": ["query", self.field], "msg": self.msg, "type": "value_error"}]


def parse_time(raw: str, name: str) -> int:
    """Epoch ms from ISO 8601 with a timezone, or from an integer of epoch milliseconds."""
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    ms = parse_ts(text.replace(" ", "+"))  # an unencoded '+' in a URL arrives as a space
    if ms is None:
        raise ParamError(name, f"{raw[:40]!r} is not ISO 8601 with a timezone nor epoch milliseconds")
    return ms


def parse_dims(raw: list[str], allowed: set[str], feed: str) -> dict[str, tuple[str, ...]]:
    """`station:s1` items; several values of one key are alternatives, different keys all apply."""
    out: dict[str, list[str]] = {}
    for item in raw:
        key, sep, value = item.partition(":")
        if not sep or not key or not value:
            raise ParamError("dims", f"{item[:80]!r} is not key:value")
        if key not in allowed:
            raise ParamError("dims", f"feed {feed} has no dim {key[:64]!r} (dims: {sorted(allowed)})")
        if value not in out.setdefault(key, []):
            out[key].append(value)
    return {k: tuple(v) for k, v in out.items()}


def build_series_query(catalog: Catalog, *, feed: str, province: str | None, from_: str | None, to: str | None,
                       step: int, dims: list[str], source: Source, now_ms: int) -> SeriesQuery:
    """Check every parameter against the catalog and align [from, to) to whole steps."""
    f = catalog.feeds.get(feed)
    if f is None:
        raise ParamError("feed", f"unknown feed {feed[:64]!r}")
    current: str | None = None
    if province is not None:
        if f.scope == "national":
            if province != NATIONAL:
                raise ParamError("province", f"national feed {feed} has only province {NATIONAL}")
            current = NATIONAL
        else:
            current = catalog.current_province(province)
            if current is None:
                raise ParamError("province", f"unknown province code {province[:16]!r}")
    if not MIN_STEP_S <= step <= MAX_STEP_S:
        raise ParamError("step", f"must be between {MIN_STEP_S} and {MAX_STEP_S} seconds")
    if source == "agg" and step % AGG_WINDOW_S:
        raise ParamError("step", f"source=agg holds {AGG_WINDOW_S} s windows: step must be a multiple of 60")
    to_ms = parse_time(to, "to") if to is not None else now_ms
    from_ms = parse_time(from_, "from") if from_ is not None else to_ms - DEFAULT_RANGE_MS
    if from_ms >= to_ms:
        raise ParamError("from", "must be before 'to'")
    step_ms = step * 1000
    from_ms -= from_ms % step_ms  # buckets are aligned to the epoch, so the range is too
    to_ms += -to_ms % step_ms
    points = (to_ms - from_ms) // step_ms
    if points > MAX_POINTS:
        raise ParamError("step", f"{points} points requested, at most {MAX_POINTS}: raise step or shorten the range")
    return SeriesQuery(feed=feed, province=current, from_ms=from_ms, to_ms=to_ms, step_s=step,
                       dims=parse_dims(dims, set(f.dims), feed), source=source)
