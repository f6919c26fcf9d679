"""Stored 1-minute aggregates recomputed from the stored raw readings. Pure: SQL text and bookkeeping, no I/O.

Why the sink and not the worker decides the stored figures: `agg_1m FINAL` must equal a recomputation
from `readings FINAL` for every series and minute, after any crash and after late readings. The worker's
windows live in memory and a changelog, with a bounded memory of recent event ids; the raw table keeps
every reading exactly once by identity, whatever was retried or replayed. So the worker's closed window
(agg.1m) and its late readings within the amend horizon (feeds.late, status `amended`) are *triggers*:
"window W of topic-partition P is closed (or changed), its readings are at offsets <= M". The sink waits
until it has stored the raw readings of P through M, then writes W recomputed from `readings FINAL`
(INSERT … SELECT: the rollup views of migration 0004 follow, as for any insert into agg_1m). A recompute
is idempotent, so a trigger read again after a crash only writes the same figures again; the newest
recompute of a window sees a superset of the older one's readings and wins (ReplacingMergeTree on
`closed_at`); `revision` is the highest source offset the stored figures include.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controlroom.warehouse import check_identifier, literal
from sinks.healer import WindowKey


@dataclass(frozen=True, slots=True)
class Trigger:
    """Recompute window (feed, province, dims_key, window_start) of `topic`/`partition` once the raw
    readings of that topic-partition are stored through `max_offset`. `at` is where the trigger itself
    was read (topic, partition, offset): its offset is not committed before the recompute is written."""

    feed: str
    province: str
    dims_key: str
    window_start_ms: int
    topic: str
    partition: int
    max_offset: int
    at: tuple[str, int, int]

    @property
    def window(self) -> tuple[str, str, str, int, int]:
        return (self.feed, self.province, self.dims_key, self.window_start_ms, self.partition)


def split_ready(triggers: Iterable[Trigger], stored_through: Mapping[tuple[str, int], int]
                ) -> tuple[list[Trigger], list[Trigger]]:
    """(ready, waiting): ready when the raw readings of its topic-partition are stored through max_offset."""
    ready: list[Trigger] = []
    waiting: list[Trigger] = []
    for t in triggers:
        (ready if stored_through.get((t.topic, t.partition), -1) >= t.max_offset else waiting).append(t)
    return ready, waiting


def commit_caps(waiting: Iterable[Trigger]) -> dict[tuple[str, int], int]:
    """Per topic-partition of the triggers' own topics: the lowest offset that may not be committed yet."""
    caps: dict[tuple[str, int], int] = {}
    for t in waiting:
        tp = (t.at[0], t.at[1])
        caps[tp] = min(caps.get(tp, t.at[2]), t.at[2])
    return caps


_COLUMNS = ("feed, province, dims, dims_key, source_partition, window_start, window_end, count, sum, min, max, "
            "avg, last, last_ts, closed_at, revision, agency")


def _select(db: str, window_s: int, where: str) -> str:
    """The recomputation of agg_1m rows from readings FINAL: one row per series, window and source partition.
    `last` is the value with the latest event time, ties broken by the later offset (as the worker does); `agency`
    is the sender of that same reading (a series has one supplier; after a hand-over, the newer one).
    Windows are found in epoch milliseconds (`ws_ms`, as the worker floors them), then typed back."""
    size = window_s * 1000
    return (
        "SELECT feed, province, any(dims), dims_key, kafka_partition, fromUnixTimestamp64Milli(ws_ms, 'UTC'), "
        f"fromUnixTimestamp64Milli(ws_ms + {size}, 'UTC'), count(), sum(value), min(value), max(value), "
        "sum(value) / count(), argMax(value, (ts, kafka_offset)), max(ts), now64(3, 'UTC'), max(kafka_offset), "
        "argMax(agency, (ts, kafka_offset)) "
        f"FROM (SELECT *, {_ws_ms(size)} AS ws_ms FROM {db}.readings FINAL WHERE {where}) "
        "GROUP BY feed, province, dims_key, kafka_partition, ws_ms"
    )


def _ts_range(from_ms: int, to_ms: int) -> str:
    return f"ts >= fromUnixTimestamp64Milli({from_ms}, 'UTC') AND ts < fromUnixTimestamp64Milli({to_ms}, 'UTC')"


def _ws_ms(size_ms: int) -> str:
    return f"intDiv(toUnixTimestamp64Milli(ts), {size_ms}) * {size_ms}"  # event times are after 2000: no negatives


def _windows_where(windows: Mapping[tuple[str, str, str, int, int], str], size_ms: int) -> str:
    """readings' filter for windows {(feed, province, dims_key, start, partition): topic}: their time range
    (the sort key prunes by it) and the windows themselves."""
    lo = min(w[3] for w in windows)
    hi = max(w[3] for w in windows) + size_ms
    tuples = ", ".join(
        f"({literal(f)}, {literal(p)}, {literal(d)}, {start}, {part}, {literal(topic)})"
        for (f, p, d, start, part), topic in sorted(windows.items()))
    key = f"(feed, province, dims_key, {_ws_ms(size_ms)}, kafka_partition, kafka_topic)"
    return f"{_ts_range(lo, hi)} AND {key} IN ({tuples})"


# Windows one statement lists: ClickHouse refuses a query text over max_query_size (256 KiB by default), and a
# worker catching up closes thousands of windows at once (5,894 in one flush, seen in a test). 1,000 windows of
# the catalog's longest keys take about 111 KB (tests/unit/test_recompute.py).
WINDOWS_PER_QUERY = 1_000


def recompute_sqls(database: str, triggers: Iterable[Trigger], window_s: int) -> list[str]:
    """The INSERT … SELECTs for the distinct windows of `triggers`, WINDOWS_PER_QUERY windows each."""
    first: dict[tuple[str, str, str, int, int], Trigger] = {}
    for t in triggers:
        first.setdefault(t.window, t)
    windows = list(first.values())
    out = []
    for start in range(0, len(windows), WINDOWS_PER_QUERY):
        sql = recompute_sql(database, windows[start:start + WINDOWS_PER_QUERY], window_s)
        if sql is not None:
            out.append(sql)
    return out


def recompute_sql(database: str, triggers: Iterable[Trigger], window_s: int) -> str | None:
    """One INSERT … SELECT for the distinct windows of `triggers` (None when there are none)."""
    db = check_identifier(database)
    windows: dict[tuple[str, str, str, int, int], str] = {}
    for t in triggers:
        windows.setdefault(t.window, t.topic)
    if not windows:
        return None
    where = _windows_where(windows, window_s * 1000)
    return f"INSERT INTO {db}.agg_1m ({_COLUMNS}) {_select(db, window_s, where)}"


def check_sql(database: str, keys: Iterable[WindowKey], window_s: int) -> tuple[str, str] | None:
    """For the healer (sinks/healer.py): what the readings of these windows are (count, highest offset) and what
    their stored aggregates say (count, revision). Two queries; None when there are no windows."""
    db = check_identifier(database)
    windows = {(f, p, d, start, part): topic for f, p, d, start, topic, part in keys}
    if not windows:
        return None
    size = window_s * 1000
    readings = (f"SELECT feed, province, dims_key, ws_ms, kafka_topic, kafka_partition, count() AS n, "
                f"max(kafka_offset) AS rev FROM (SELECT feed, province, dims_key, kafka_topic, kafka_partition, "
                f"kafka_offset, {_ws_ms(size)} AS ws_ms FROM {db}.readings FINAL "
                f"WHERE {_windows_where(windows, size)}) "
                "GROUP BY feed, province, dims_key, ws_ms, kafka_topic, kafka_partition")
    lo, hi = min(w[3] for w in windows), max(w[3] for w in windows)
    tuples = ", ".join(f"({literal(f)}, {literal(p)}, {literal(d)}, {start}, {part})"
                       for f, p, d, start, part in sorted(windows))
    stored = ("SELECT feed, province, dims_key, toUnixTimestamp64Milli(window_start) AS ws_ms, source_partition, "
              f"count AS n, revision AS rev FROM {db}.agg_1m FINAL "
              f"WHERE window_start >= fromUnixTimestamp64Milli({lo}, 'UTC') "
              f"AND window_start <= fromUnixTimestamp64Milli({hi}, 'UTC') "
              "AND (feed, province, dims_key, toUnixTimestamp64Milli(window_start), source_partition) "
              f"IN ({tuples})")
    return readings, stored


def backfill_sql(database: str, from_ms: int, to_ms: int, window_s: int) -> str:
    """Recompute every stored window that starts in [from_ms, to_ms) (both aligned to windows by the caller)."""
    db = check_identifier(database)
    return f"INSERT INTO {db}.agg_1m ({_COLUMNS}) {_select(db, window_s, _ts_range(from_ms, to_ms))}"


def backfill_count_sql(database: str, from_ms: int, to_ms: int, window_s: int) -> str:
    """What `backfill_sql` writes: w = windows (agg_1m rows), r = the raw readings they summarize."""
    db = check_identifier(database)
    return (f"SELECT count() AS w, sum(n) AS r FROM (SELECT count() AS n FROM {db}.readings FINAL "
            f"WHERE {_ts_range(from_ms, to_ms)} "
            f"GROUP BY feed, province, dims_key, kafka_partition, {_ws_ms(window_s * 1000)})")
