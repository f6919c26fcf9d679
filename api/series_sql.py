"""SQL for /series, /overview (and the live wall) and /healthz, as pure builders returning (sql, params).

Every value a caller supplies travels as a ClickHouse `{name:Type}` parameter; only the database
name (from settings, checked to be an identifier) and the builder's own fixed fragments are spliced
into the text. Parameters are scalars (String, Int64) only, because scalar binding behaves the same
on clickhouse-connect and chDB (chDB wants array parameters pre-formatted as SQL text).

Column aliases never reuse a column name (`any(ts) AS ev_ts`, not `AS ts`): ClickHouse lets
aliases shadow columns in WHERE, which would turn a filter into an aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from controlroom.warehouse import check_identifier

Params = dict[str, Any]
Source = Literal["raw", "agg"]

def _ms(param: str) -> str:
    return f"fromUnixTimestamp64Milli({{{param}:Int64}}, 'UTC')"


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    """A validated /series request: current province code (None = all), aligned [from, to) in epoch ms."""

    feed: str
    province: str | None
    from_ms: int
    to_ms: int
    step_s: int
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> accepted values (OR); keys AND
    source: Source = "raw"


def _filters(q: SeriesQuery, ts_col: str, params: Params) -> list[str]:
    where = ["feed = {feed:String}", f"{ts_col} >= {_ms('from_ms')}", f"{ts_col} < {_ms('to_ms')}"]
    params.update(feed=q.feed, from_ms=q.from_ms, to_ms=q.to_ms)
    if q.province is not None:
        where.append("province = {province:String}")
        params["province"] = q.province
    for i, key in enumerate(sorted(q.dims)):
        names = []
        for j, value in enumerate(q.dims[key]):
            params[f"dim{i}_v{j}"] = value
            names.append(f"{{dim{i}_v{j}:String}}")
        params[f"dim{i}_key"] = key
        where.append(f"dims[{{dim{i}_key:String}}] IN ({', '.join(names)})")
    return where


def series_sql(database: str, q: SeriesQuery) -> tuple[str, Params]:
    """Buckets of `step_s` aligned to the epoch; rows: t (ms), n, total, lo, hi, last_value.

    raw: readings deduplicated by event_id (a re-sent reading counts once, whatever merges have run).
    agg: closed 1-minute windows; one window may be split in partials (one per source partition), so
    partials are summed, never replaced (see controlroom.schema.window_message).
    """
    db = check_identifier(database)
    params: Params = {"step_ms": q.step_s * 1000}
    if q.source == "raw":
        where = " AND ".join(_filters(q, "ts", params))
        sql = (
            "SELECT intDiv(toUnixTimestamp64Milli(ev_ts), {step_ms:Int64}) * {step_ms:Int64} AS t, "
            "count() AS n, sum(ev_value) AS total, min(ev_value) AS lo, max(ev_value) AS hi, "
            "argMax(ev_value, (ev_ts, event_id)) AS last_value "
            "FROM ("
            # duplicates of one event are byte-identical re-sends, so any() of each column is exact
            "SELECT event_id, any(ts) AS ev_ts, any(value) AS ev_value "
            f"FROM {db}.readings WHERE {where} GROUP BY event_id"
            ") GROUP BY t ORDER BY t"
        )
    else:
        where = " AND ".join(_filters(q, "window_start", params))
        sql = (
            "SELECT intDiv(toUnixTimestamp64Milli(window_start), {step_ms:Int64}) * {step_ms:Int64} AS t, "
            f"{_AGG_FIGURES} FROM {db}.agg_1m FINAL WHERE {where} GROUP BY t ORDER BY t"
        )
    return sql, params


# a bucket of closed windows: partials of one window (one per source partition) are summed, never replaced
_AGG_FIGURES = ("sum(count) AS n, sum(sum) AS total, min(min) AS lo, max(max) AS hi, "
                "argMax(last, (last_ts, province, dims_key)) AS last_value")


def _in(column: str, name: str, values: list[str], params: Params) -> str:
    """`column IN (...)` with one scalar parameter per value."""
    names = []
    for i, v in enumerate(values):
        params[f"{name}{i}"] = v
        names.append(f"{{{name}{i}:String}}")
    return f"{column} IN ({', '.join(names)})"


def trends_sql(database: str, feeds: list[str], province: str | None, from_ms: int, to_ms: int) -> tuple[str, Params]:
    """The wall's sparklines in one query: per feed, per closed minute in [from, to), what /series (source agg,
    step 60) answers for that feed (every province when `province` is None). Rows: feed, t (ms), n, total, lo, hi,
    last_value."""
    db = check_identifier(database)
    params: Params = {"from_ms": from_ms, "to_ms": to_ms}
    where = [_in("feed", "feed", feeds, params), f"window_start >= {_ms('from_ms')}", f"window_start < {_ms('to_ms')}"]
    if province is not None:
        where.append("province = {province:String}")
        params["province"] = province
    sql = (f"SELECT feed, toUnixTimestamp64Milli(window_start) AS t, {_AGG_FIGURES} "
           f"FROM {db}.agg_1m FINAL WHERE {' AND '.join(where)} GROUP BY feed, t ORDER BY feed, t")
    return sql, params


def communes_sql(database: str, feeds: list[str], province: str, from_ms: int) -> tuple[str, Params]:
    """Where inside a province: per feed and commune, the readings since `from_ms` that named a commune, each
    counted once (deduplicated by event_id, as /series' raw source). Rows: feed, commune, n, total, last_ms; the
    busiest first. Reads `readings` by its sort key's prefix (feed, province)."""
    db = check_identifier(database)
    params: Params = {"province": province, "from_ms": from_ms}
    where = " AND ".join([_in("feed", "feed", feeds, params), "province = {province:String}",
                          f"ts >= {_ms('from_ms')}", "commune != ''"])
    sql = (
        "SELECT ev_feed AS feed, ev_commune AS commune, count() AS n, sum(ev_value) AS total, "
        "toUnixTimestamp64Milli(max(ev_ts)) AS last_ms FROM ("
        # duplicates of one event are byte-identical re-sends, so any() of each column is exact
        "SELECT event_id, any(feed) AS ev_feed, any(commune) AS ev_commune, any(value) AS ev_value, any(ts) AS ev_ts "
        f"FROM {db}.readings WHERE {where} GROUP BY event_id"
        ") GROUP BY ev_feed, ev_commune ORDER BY ev_feed, total DESC, ev_commune"
    )
    return sql, params


def overview_series_sql(database: str, since_ms: int, recent_ms: int) -> tuple[str, Params]:
    """Latest reading of every series seen since `since_ms`, plus its deduplicated stats since `recent_ms`.

    Rows: feed, province, dims_key, last_ms, last_value, n_recent, total_recent, lo_recent, hi_recent
    (lo/hi are NULL when the series has no reading since `recent_ms`).

    Reads the tables of migration 0005, not `readings` (ordered by series first, so a ts filter scans it):
    the latest reading comes from readings_latest (max/argMax states: exact whatever was inserted twice;
    a series is seen since `since_ms` exactly when its latest ts is), the 5-minute figures from
    readings_recent (the last day, ordered by ts), deduplicated by event_id. `recent_ms` must lie within
    that day; /overview asks for the last 5 minutes. Measured with 10M readings (bench/api_bench.py): p50 55 ms
    vs 165 ms (100 live readings/s), 180 ms vs 783 ms (1,000/s); the cost now grows with the 5-minute traffic only.
    """
    db = check_identifier(database)
    sql = (
        "SELECT feed, province, dims_key, toUnixTimestamp64Milli(ev_last_ts) AS last_ms, ev_last_value AS last_value, "
        "n_recent, total_recent, lo_recent, hi_recent "
        "FROM ("
        "SELECT feed, province, dims_key, max(last_ts) AS ev_last_ts, argMaxMerge(last_value) AS ev_last_value "
        f"FROM {db}.readings_latest GROUP BY feed, province, dims_key HAVING ev_last_ts >= {_ms('since_ms')}"
        ") AS latest LEFT JOIN ("
        "SELECT ev_feed AS feed, ev_province AS province, ev_dims_key AS dims_key, count() AS n_recent, "
        "sum(ev_value) AS total_recent, minOrNull(ev_value) AS lo_recent, maxOrNull(ev_value) AS hi_recent "
        "FROM ("
        # duplicates of one event are byte-identical re-sends, so any() of each column is exact
        "SELECT feed AS ev_feed, event_id, any(province) AS ev_province, any(dims_key) AS ev_dims_key, "
        "any(value) AS ev_value "
        f"FROM {db}.readings_recent WHERE ts >= {_ms('recent_ms')} GROUP BY feed, event_id"
        ") GROUP BY feed, province, dims_key"
        # a series with no recent reading: n 0, total 0, lo/hi NULL (defaults, not NULLs, for the non-Nullable)
        ") AS recent USING (feed, province, dims_key) SETTINGS join_use_nulls = 0"
    )
    return sql, {"since_ms": since_ms, "recent_ms": recent_ms}


def quality_counts_sql(database: str, since_ms: int) -> tuple[str, Params]:
    """Dead letters and late readings received since `since_ms`, each counted once by its identity."""
    db = check_identifier(database)
    sql = (
        f"SELECT (SELECT uniqExact(dlq_id) FROM {db}.dead_letters WHERE received_at >= {_ms('since_ms')}) "
        "AS dead_letters, "
        f"(SELECT uniqExact(event_id) FROM {db}.late_readings WHERE detected_at >= {_ms('since_ms')}) AS late"
    )
    return sql, {"since_ms": since_ms}


def ping_sql() -> tuple[str, Params]:
    return "SELECT 1 AS ok", {}
