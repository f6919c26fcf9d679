"""Tumbling-window arithmetic, watermarks and lateness: pure code, no Faust, Kafka or ClickHouse.

State lives in a byte mapping (`store`) that the Faust adapter backs with a changelogged table:
  b"p|<topic>|<partition>"                          -> partition state (watermark, applied offset)
  b"w|<window_end>|<topic>|<partition>|<series>|<window_start>" -> one open window's aggregate
Every change is also handed to `persist(partition, key, value_or_None)` so the adapter can write
it to the changelog once per key per batch.

Exactly-once over restarts without Kafka transactions:
- each window and each partition state remembers the highest source offset it has absorbed, and a
  replayed record at or below it is skipped (the changelog can be ahead of committed offsets);
- a reading is late when its window ends at or before the partition's watermark *as it stood when
  the reading came in*, so lateness depends on the order of records, not on batch boundaries.
Windows close from a timer (`close_due`), driven by the watermark, never by the next event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field

import orjson

from controlroom.schema import Reading, series_key

Persist = Callable[[int, bytes, bytes | None], None]
NO_OFFSET = -1
NO_TIME = -(1 << 62)


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ts (floor division: correct before 1970 too)."""
    return ts_ms - ts_ms % size_ms


@dataclass(slots=True)
class WindowAgg:
    count: int
    total: float
    vmin: float
    vmax: float
    last: float
    last_ts: int
    max_offset: int

    @classmethod
    def first(cls, value: float, ts_ms: int, offset: int) -> WindowAgg:
        return cls(1, value, value, value, value, ts_ms, offset)

    def add(self, value: float, ts_ms: int, offset: int) -> None:
        self.count += 1
        self.total += value
        if value < self.vmin:
            self.vmin = value
        if value > self.vmax:
            self.vmax = value
        if ts_ms >= self.last_ts:  # `last` is the value with the latest event time (ties: latest offset)
            self.last, self.last_ts = value, ts_ms
        if offset > self.max_offset:
            self.max_offset = offset

    def merge(self, other: WindowAgg) -> None:
        self.count += other.count
        self.total += other.total
        self.vmin = min(self.vmin, other.vmin)
        self.vmax = max(self.vmax, other.vmax)
        if other.last_ts >= self.last_ts:
            self.last, self.last_ts = other.last, other.last_ts
        self.max_offset = max(self.max_offset, other.max_offset)

    def encode(self, dims: dict[str, str]) -> bytes:
        return orjson.dumps([self.count, self.total, self.vmin, self.vmax, self.last, self.last_ts,
                             self.max_offset, dims])

    @classmethod
    def decode(cls, raw: bytes) -> tuple[WindowAgg, dict[str, str]]:
        c, t, lo, hi, last, last_ts, off, dims = orjson.loads(raw)
        return cls(c, t, lo, hi, last, last_ts, off), dims


@dataclass(slots=True)
class PartitionState:
    applied_offset: int = NO_OFFSET
    max_event_ms: int = NO_TIME
    watermark_ms: int = NO_TIME

    def encode(self) -> bytes:
        return orjson.dumps([self.applied_offset, self.max_event_ms, self.watermark_ms])

    @classmethod
    def decode(cls, raw: bytes | None) -> PartitionState:
        return cls(*orjson.loads(raw)) if raw else cls()


@dataclass(frozen=True, slots=True)
class ClosedWindow:  # also used for an open window's running aggregate (live updates)
    feed: str
    province: str
    dims: dict[str, str]
    window_start_ms: int
    agg: WindowAgg


@dataclass(slots=True)
class LateReading:
    reading: Reading
    offset: int
    watermark_ms: int


@dataclass(slots=True)
class BatchResult:
    applied: int = 0
    late: list[LateReading] = field(default_factory=list)
    skipped_replayed: int = 0
    duplicates: int = 0
    touched: list[tuple[bytes, ClosedWindow]] = field(default_factory=list)  # open windows as they now stand


class RecentIds:
    """Bounded memory of recently aggregated event ids (two rotating generations), to drop duplicates."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self.current: set[str] = set()
        self.previous: set[str] = set()

    def seen(self, event_id: str) -> bool:
        """True when the id was seen already; otherwise remember it and return False."""
        if event_id in self.current or event_id in self.previous:
            return True
        if len(self.current) >= self.capacity:
            self.previous, self.current = self.current, set()
        self.current.add(event_id)
        return False


def _pkey(topic: str, partition: int) -> bytes:
    return f"p|{topic}|{partition}".encode()


def _wkey(end_ms: int, topic: str, partition: int, skey: str, start_ms: int) -> bytes:
    return f"w|{end_ms}|{topic}|{partition}|{skey}|{start_ms}".encode()


class WindowEngine:
    def __init__(self, store: MutableMapping[bytes, bytes], persist: Persist, *, size_ms: int,
                 lateness_ms: int, idle_ms: int, recent: RecentIds | None = None) -> None:
        self.store = store
        self.persist = persist
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.idle_ms = idle_ms
        self.recent = recent or RecentIds()
        self.last_seen_wall: dict[tuple[str, int], int] = {}  # not persisted: wall clock of last record

    def partition_state(self, topic: str, partition: int) -> PartitionState:
        return PartitionState.decode(self.store.get(_pkey(topic, partition)))

    def _save_partition(self, topic: str, partition: int, ps: PartitionState) -> None:
        key, raw = _pkey(topic, partition), ps.encode()
        self.store[key] = raw
        self.persist(partition, key, raw)

    def apply(self, topic: str, partition: int, records: Iterable[tuple[int, Reading]],
              wall_ms: int) -> BatchResult:
        """Absorb one partition's records (in offset order). Writes each touched window once."""
        ps = self.partition_state(topic, partition)
        result = BatchResult()
        local: dict[bytes, tuple[WindowAgg, dict[str, str]]] = {}
        key_offsets: dict[bytes, int] = {}  # stored max offset per touched window (replay guard)
        size = self.size_ms
        guard = ps.applied_offset  # as at batch start: readings sharing one message share its offset
        wkeys: dict[tuple[int, str, str, tuple[tuple[str, str], ...]], bytes] = {}  # key text, built once
        for offset, r in records:
            if offset <= guard:
                result.skipped_replayed += 1
                self.recent.seen(r.event_id)  # so a later duplicate of it is still recognised
                continue
            start = r.ts_ms - r.ts_ms % size
            end = start + size
            if end <= ps.watermark_ms:
                result.late.append(LateReading(r, offset, ps.watermark_ms))
            else:
                ident = (start, r.feed, r.province, tuple(r.dims.items()))
                key = wkeys.get(ident)
                if key is None:
                    key = wkeys[ident] = _wkey(end, topic, partition, series_key(r.feed, r.province, r.dims_key),
                                               start)
                stored_off = key_offsets.get(key)
                if stored_off is None:
                    raw = self.store.get(key)
                    stored_off = WindowAgg.decode(raw)[0].max_offset if raw else NO_OFFSET
                    key_offsets[key] = stored_off
                if offset <= stored_off:
                    result.skipped_replayed += 1  # absorbed before a restart; its changelog survived
                    self.recent.seen(r.event_id)
                    continue
                if self.recent.seen(r.event_id):
                    result.duplicates += 1
                    continue
                entry = local.get(key)
                if entry is None:
                    local[key] = (WindowAgg.first(r.value, r.ts_ms, offset), r.dims)
                else:
                    entry[0].add(r.value, r.ts_ms, offset)
                result.applied += 1
                if r.ts_ms > ps.max_event_ms:
                    ps.max_event_ms = r.ts_ms
                    if ps.max_event_ms - self.lateness_ms > ps.watermark_ms:
                        ps.watermark_ms = ps.max_event_ms - self.lateness_ms
            if offset > ps.applied_offset:
                ps.applied_offset = offset
        for key, (agg, dims) in local.items():
            raw = self.store.get(key)
            if raw:
                stored, dims = WindowAgg.decode(raw)
                stored.merge(agg)
                agg = stored
            enc = agg.encode(dims)
            self.store[key] = enc
            self.persist(partition, key, enc)
            parts = key.decode().split("|")  # w|end|topic|partition|feed|province|dims_key|start
            result.touched.append((key, ClosedWindow(parts[4], parts[5], dims, int(parts[7]), agg)))
        # Partition state last: if we crash before it lands, replay is guarded by the window offsets.
        self._save_partition(topic, partition, ps)
        self.last_seen_wall[(topic, partition)] = wall_ms
        return result

    def advance_idle(self, wall_ms: int) -> None:
        """A partition quiet for `idle_ms` lets its watermark follow the wall clock from its last event."""
        for key in [k for k in self.store if k.startswith(b"p|")]:
            _, topic, part = key.decode().split("|")
            tp = (topic, int(part))
            last_wall = self.last_seen_wall.setdefault(tp, wall_ms)
            idle = wall_ms - last_wall
            ps = PartitionState.decode(self.store[key])
            if idle <= self.idle_ms or ps.max_event_ms == NO_TIME:
                continue
            candidate = ps.max_event_ms - self.lateness_ms + (idle - self.idle_ms)
            # follow the clock, never overtake it: after a reading stamped ahead of time (clock skew is
            # accepted up to MAX_FUTURE_S) the next on-time readings must not count as late
            candidate = min(candidate, wall_ms - self.lateness_ms)
            if candidate > ps.watermark_ms:
                ps.watermark_ms = candidate
                self._save_partition(topic, int(part), ps)

    def due_windows(self) -> list[tuple[bytes, int, ClosedWindow]]:
        """Windows whose end is at or before their partition's watermark: (key, partition, window)."""
        watermarks: dict[tuple[str, int], int] = {}
        due: list[tuple[bytes, int, ClosedWindow]] = []
        for key in list(self.store.keys()):
            if not key.startswith(b"w|"):
                continue
            _, end, topic, part, feed, province, dkey, start = key.decode().split("|")
            tp = (topic, int(part))
            wm = watermarks.get(tp)
            if wm is None:
                wm = watermarks[tp] = self.partition_state(*tp).watermark_ms
            if int(end) <= wm:
                agg, dims = WindowAgg.decode(self.store[key])
                due.append((key, tp[1], ClosedWindow(feed, province, dims, int(start), agg)))
        due.sort(key=lambda d: (d[2].window_start_ms, d[0]))
        return due

    def forget(self, key: bytes, partition: int) -> None:
        """Drop a window once its closed aggregate is durable downstream."""
        if self.store.pop(key, None) is not None:
            self.persist(partition, key, None)

    def open_windows(self) -> int:
        return sum(1 for k in self.store if k.startswith(b"w|"))

