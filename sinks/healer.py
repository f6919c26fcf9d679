"""The sink's own check that every window of stored raw readings was recomputed. Pure: bookkeeping, no I/O.

Why: the stored aggregates are written when the worker says a window closed (sinks/recompute.py). A window
the worker never closes — its state lost in a crash during a rebalance, a bug — would leave raw readings
without an aggregate for good. So the sink, which stores every raw reading itself, remembers each window
its readings fall in ("open" windows: topic, partition, series, minute → the offsets it stored there). Once
the window is closed by the sink's own view of the partition (its newest event time minus the lateness
allowance is past the window's end, or the partition went quiet for the idle time and the clock is past it)
and `heal_after_ms` more have passed without a new reading in it, the sink compares the stored aggregate
with its readings (count and highest offset) and recomputes the window when they differ: a window the worker
lost, or one it has not closed yet, is written all the same. Every such window is counted and logged.

Crash safety: a raw partition's offsets are not committed past the lowest offset of a window still to be
checked (`commit_caps`), so a sink restarted after a crash reads those readings again and checks their
windows again. Windows older than the amend horizon (by the partition's newest event time) are not checked:
their late readings are `too_late`, left to `controlroom backfill`, as in the worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

# feed, province, dims_key, window_start_ms, topic, partition
WindowKey = tuple[str, str, str, int, str, int]
SERIES_COLUMNS = ("feed", "province", "dims_key", "kafka_topic", "kafka_partition")


@dataclass(slots=True)
class Pending:
    min_offset: int
    max_offset: int
    touched_ms: int  # wall clock of the last reading stored in it
    closed_ms: int | None = None  # wall clock when the sink first saw it closed


def windows_of(readings: pa.Table, window_ms: int) -> list[tuple[WindowKey, int, int, int]]:
    """The windows a batch of stored readings falls in: (key, lowest offset, highest offset, newest event ms)."""
    if readings.num_rows == 0:
        return []
    ts = pc.cast(readings["ts"], pa.int64())
    start = pc.multiply(pc.divide(ts, window_ms), window_ms)  # integer division: event times are after 2000
    table = pa.table({**{c: readings[c] for c in SERIES_COLUMNS}, "ws": start, "ts_ms": ts,
                      "off": pc.cast(readings["kafka_offset"], pa.int64())})
    grouped = table.group_by([*SERIES_COLUMNS, "ws"]).aggregate([("off", "min"), ("off", "max"), ("ts_ms", "max")])
    out = []
    for r in grouped.to_pylist():
        key = (r["feed"], r["province"], r["dims_key"], r["ws"], r["kafka_topic"], r["kafka_partition"])
        out.append((key, r["off_min"], r["off_max"], r["ts_ms_max"]))
    return out


class Healer:
    def __init__(self, *, window_ms: int, lateness_ms: int, idle_ms: int, heal_after_ms: int,
                 amend_horizon_ms: int) -> None:
        self.window_ms, self.lateness_ms, self.idle_ms = window_ms, lateness_ms, idle_ms
        self.heal_after_ms, self.amend_horizon_ms = heal_after_ms, amend_horizon_ms
        self.pending: dict[WindowKey, Pending] = {}
        self.newest_ts: dict[tuple[str, int], int] = {}  # per raw topic-partition: newest event time stored
        self.stored_at: dict[tuple[str, int], int] = {}  # per raw topic-partition: wall clock of its last store

    def stored(self, windows: Iterable[tuple[WindowKey, int, int, int]], wall_ms: int) -> None:
        """Readings were stored (windows_of their batch): their windows are checked once closed."""
        for key, lo, hi, newest in windows:
            p = self.pending.get(key)
            if p is None:
                self.pending[key] = Pending(lo, hi, wall_ms)
            else:
                p.min_offset, p.max_offset = min(p.min_offset, lo), max(p.max_offset, hi)
                p.touched_ms, p.closed_ms = wall_ms, None  # a new reading: the worker's amendment comes first
            tp = (key[4], key[5])
            self.newest_ts[tp] = max(self.newest_ts.get(tp, newest), newest)
            self.stored_at[tp] = wall_ms

    def _closed(self, key: WindowKey, wall_ms: int) -> bool:
        tp = (key[4], key[5])
        end = key[3] + self.window_ms
        if self.newest_ts.get(tp, 0) - self.lateness_ms >= end:
            return True
        quiet = wall_ms - self.stored_at.get(tp, wall_ms) >= self.idle_ms
        return quiet and wall_ms - self.lateness_ms >= end

    def due(self, wall_ms: int) -> list[WindowKey]:
        """The windows to check now. Windows past the amend horizon are dropped unchecked (see above)."""
        out: list[WindowKey] = []
        for key, p in list(self.pending.items()):
            if key[3] + self.window_ms < self.newest_ts.get((key[4], key[5]), 0) - self.amend_horizon_ms:
                del self.pending[key]
                continue
            if p.closed_ms is None:
                if not self._closed(key, wall_ms):
                    continue
                p.closed_ms = wall_ms
            if wall_ms >= max(p.closed_ms, p.touched_ms) + self.heal_after_ms:
                out.append(key)
        return out

    def checked(self, keys: Iterable[WindowKey]) -> None:
        """These windows were checked (and recomputed where needed): their offsets may be committed."""
        for key in keys:
            self.pending.pop(key, None)

    def drop_partitions(self, gone: set[tuple[str, int]]) -> None:
        """Partitions this sink no longer owns: their next owner reads the uncommitted readings again."""
        self.pending = {k: p for k, p in self.pending.items() if (k[4], k[5]) not in gone}
        for tp in gone:
            self.newest_ts.pop(tp, None)
            self.stored_at.pop(tp, None)

    def commit_caps(self) -> dict[tuple[str, int], int]:
        """Per raw topic-partition: the lowest offset that may not be committed yet."""
        caps: dict[tuple[str, int], int] = {}
        for key, p in self.pending.items():
            tp = (key[4], key[5])
            caps[tp] = min(caps.get(tp, p.min_offset), p.min_offset)
        return caps


def stale(keys: Iterable[WindowKey], readings: Mapping[WindowKey, tuple[int, int]],
          stored: Mapping[tuple[str, str, str, int, int], tuple[int, int]]) -> list[WindowKey]:
    """The windows whose stored aggregate (count, revision) differs from their readings (count, highest offset),
    or is missing. `readings` is keyed like the windows; `stored` by (feed, province, dims_key, start, partition)."""
    out = []
    for key in keys:
        have = readings.get(key)
        if have is None:
            continue  # no reading left (e.g. moved by dedup to another partition): nothing to aggregate
        if stored.get((key[0], key[1], key[2], key[3], key[5])) != have:
            out.append(key)
    return out
