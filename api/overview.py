"""Pure assembly of /overview from the latest reading of each series (one row per series).

A series is reporting when its last reading is within STALE_CADENCES (controlroom.catalog) × its feed's cadence of now;
every other expected series (catalog.iter_series) is silent, including one never seen. Reporting and
silent counts cover expected series only, so reporting + silent = expected everywhere; series the
catalog does not list (e.g. a reading with partial dims) are counted apart as `series_unexpected`,
while their readings still count in the figures (they are real readings).

A feed is `reporting` when all its expected series report, `silent` when none does, `degraded` in
between (the feed-health grid of the wall). The public-service on-time rate is the share of dossiers
resolved on time (feed dvc_dossiers_resolved, dims on_time=true) among all dossiers resolved in the last
5 minutes, in percent: the numerator/denominator of the `dvc_on_time_share` rule, over the overview's window.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from api.series_sql import overview_series_sql, quality_counts_sql
from controlroom.catalog import ON_TIME_DIM, ON_TIME_FEED, STALE_CADENCES, Catalog, Feed
from controlroom.schema import dims_key, ms_to_iso

RECENT_MS = 300_000  # the "last 5 minutes" figures


def lookback_ms(catalog: Catalog) -> int:
    """How far back /overview reads: the longest time a series may be quiet and still be reporting."""
    return int(max(f.cadence_s for f in catalog.feeds.values()) * STALE_CADENCES * 1000)


@dataclass(frozen=True, slots=True)
class SeriesLatest:
    feed: str
    province: str
    dims_key: str
    last_ms: int
    last_value: float
    n_recent: int
    total_recent: float
    lo_recent: float | None
    hi_recent: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SeriesLatest:
        lo, hi = row.get("lo_recent"), row.get("hi_recent")
        return cls(str(row["feed"]), str(row["province"]), str(row["dims_key"]), int(row["last_ms"]),
                   float(row["last_value"]), int(row["n_recent"]), float(row["total_recent"]),
                   None if lo is None else float(lo), None if hi is None else float(hi))


def is_reporting(feed: Feed, last_ms: int | None, now_ms: int) -> bool:
    return last_ms is not None and last_ms >= now_ms - feed.cadence_s * STALE_CADENCES * 1000


def feed_status(expected: int, reporting: int) -> str:
    if expected and reporting >= expected:
        return "reporting"
    return "degraded" if reporting else "silent"


def on_time_rate(rows: list[SeriesLatest]) -> dict[str, Any]:
    """Dossiers resolved, and resolved on time, in the last 5 minutes; rate in percent (None with none resolved)."""
    mine = [r for r in rows if r.feed == ON_TIME_FEED]
    resolved = sum(r.total_recent for r in mine)
    on_time = sum(r.total_recent for r in mine if ON_TIME_DIM in r.dims_key.split(","))
    return {"resolved_5m": resolved, "on_time_5m": on_time,
            "on_time_rate_pct": round(100.0 * on_time / resolved, 2) if resolved else None}


def _iso(ms: int | None) -> str | None:
    return None if ms is None else ms_to_iso(ms)


def _feed_out(f: Feed, frows: list[SeriesLatest], expected: int, reporting: int, now_ms: int) -> dict[str, Any]:
    """One feed of /overview: its series counts and status, latest value, and its last-5-minutes figures."""
    live = [r.last_value for r in frows if is_reporting(f, r.last_ms, now_ms)]
    latest = (sum(live) if f.kind == "counter" else sum(live) / len(live)) if live else None
    n = sum(r.n_recent for r in frows)
    total = sum(r.total_recent for r in frows)
    los = [r.lo_recent for r in frows if r.lo_recent is not None]
    his = [r.hi_recent for r in frows if r.hi_recent is not None]
    return {
        "id": f.id, "name_vi": f.name_vi, "name_en": f.name_en, "category": f.category, "unit": f.unit,
        "kind": f.kind, "cadence_s": f.cadence_s, "series_expected": expected,
        "series_reporting": reporting, "series_silent": expected - reporting,
        "status": feed_status(expected, reporting),
        "last_ts": _iso(max((r.last_ms for r in frows), default=None)), "latest_value": latest,
        "last_5m": {"count": n, "sum": total, "avg": total / n if n else None,
                    "min": min(los, default=None), "max": max(his, default=None)},
    }


def build_overview(catalog: Catalog, rows: list[SeriesLatest], *, now_ms: int, dead_letters_recent: int,
                   late_recent: int) -> dict[str, Any]:
    seen = {(r.feed, r.province, r.dims_key): r for r in rows}
    expected = {(f.id, p, dims_key(d)) for f, p, d in catalog.iter_series()}

    feed_expected: dict[str, int] = defaultdict(int)
    feed_reporting: dict[str, int] = defaultdict(int)
    prov_expected: dict[str, int] = defaultdict(int)
    prov_reporting: dict[str, int] = defaultdict(int)
    prov_feeds: dict[str, set[str]] = defaultdict(set)
    for feed_id, province, dkey in expected:
        feed_expected[feed_id] += 1
        prov_expected[province] += 1
        row = seen.get((feed_id, province, dkey))
        if row is not None and is_reporting(catalog.feeds[feed_id], row.last_ms, now_ms):
            feed_reporting[feed_id] += 1
            prov_reporting[province] += 1
            prov_feeds[province].add(feed_id)

    by_feed: dict[str, list[SeriesLatest]] = defaultdict(list)
    prov_last: dict[str, int] = {}
    unexpected = 0
    for r in rows:
        if r.feed not in catalog.feeds:
            continue  # a feed retired from the catalog: not on the wall
        by_feed[r.feed].append(r)
        prov_last[r.province] = max(prov_last.get(r.province, r.last_ms), r.last_ms)
        if (r.feed, r.province, r.dims_key) not in expected and is_reporting(catalog.feeds[r.feed], r.last_ms, now_ms):
            unexpected += 1

    feeds_out = [_feed_out(f, by_feed.get(f.id, []), feed_expected[f.id], feed_reporting[f.id], now_ms)
                 for f in catalog.feeds.values()]

    categories_out = []
    for c in catalog.categories.values():
        ids = [f.id for f in catalog.feeds.values() if f.category == c.id]
        rep = sum(feed_reporting[i] for i in ids)
        categories_out.append({
            "id": c.id, "name_vi": c.name_vi, "name_en": c.name_en, "feeds": ids,
            "feeds_reporting": sum(1 for i in ids if feed_reporting[i]),
            "series_reporting": rep, "series_silent": sum(feed_expected[i] for i in ids) - rep,
        })

    provinces_out = [{
        "code": p.code, "name_vi": p.name_vi, "name_en": p.name_en, "lat": p.lat, "lon": p.lon,
        "feeds_reporting": len(prov_feeds[p.code]), "series_reporting": prov_reporting[p.code],
        "series_silent": prov_expected[p.code] - prov_reporting[p.code], "last_ts": _iso(prov_last.get(p.code)),
    } for p in catalog.provinces.values()]

    series_reporting = sum(feed_reporting.values())
    return {
        "generated_at": ms_to_iso(now_ms),
        "totals": {
            "feeds": len(catalog.feeds), "feeds_reporting": sum(1 for v in feed_reporting.values() if v),
            "categories": len(catalog.categories),
            "categories_reporting": sum(1 for c in categories_out if c["feeds_reporting"]),
            "provinces": len(catalog.provinces),
            "provinces_reporting": sum(1 for code in catalog.provinces if prov_feeds[code]),
            "series_expected": len(expected), "series_reporting": series_reporting,
            "series_silent": len(expected) - series_reporting, "series_unexpected": unexpected,
            "readings_5m": sum(r.n_recent for r in rows if r.feed in catalog.feeds),
            "dead_letters_5m": dead_letters_recent, "late_5m": late_recent,
        },
        "public_services": on_time_rate(rows),
        "categories": categories_out,
        "feeds": feeds_out,
        "provinces": provinces_out,
    }


Query = Callable[[tuple[str, dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


def feed_figures(catalog: Catalog, rows: list[SeriesLatest], province: str, now_ms: int) -> list[dict[str, Any]]:
    """/overview's figures of each provincial feed, over one province's series only (the wall's province page):
    the same definitions (status, latest value, last 5 minutes) as build_overview's `feeds`."""
    mine: dict[str, list[SeriesLatest]] = defaultdict(list)
    for r in rows:
        if r.province == province:
            mine[r.feed].append(r)
    out = []
    for f in catalog.feeds.values():
        if f.scope != "provincial":
            continue
        frows = mine.get(f.id, [])
        latest = {r.dims_key: r.last_ms for r in frows}
        keys = [dims_key(d) for d in f.dim_combinations()]
        reporting = sum(1 for k in keys if is_reporting(f, latest.get(k), now_ms))
        out.append(_feed_out(f, frows, len(keys), reporting, now_ms))
    return out


async def read_series_latest(query: Query, database: str, catalog: Catalog, now_ms: int) -> list[SeriesLatest]:
    """Every series' latest reading and last-5-minutes figures (the rows build_overview and feed_figures take)."""
    rows = await query(overview_series_sql(database, now_ms - lookback_ms(catalog), now_ms - RECENT_MS))
    return [SeriesLatest.from_row(r) for r in rows]


async def read_overview(query: Query, database: str, catalog: Catalog, now_ms: int) -> dict[str, Any]:
    """/overview at `now_ms`: its two queries through `query` (the caller's warehouse access), then build_overview.
    The one way /overview and the live wall (api/wall.py) read their figures."""
    series_rows = await read_series_latest(query, database, catalog, now_ms)
    quality = await query(quality_counts_sql(database, now_ms - RECENT_MS))
    q = quality[0] if quality else {}
    return build_overview(catalog, series_rows, now_ms=now_ms,
                          dead_letters_recent=int(q.get("dead_letters", 0)), late_recent=int(q.get("late", 0)))
