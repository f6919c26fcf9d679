"""Tumbling-window arithmetic, watermarks and lateness: pure code, no Faust, Kafka or ClickHouse.

State lives in a byte mapping (`store`) that the Faust adapter backs with a changelogged table:
  b"p|<topic>|<partition>"                          -> partition state (watermark, applied offset)
  b"w|<window_end>|<topic>|<partition>|<series>|<window_start>" -> one open window's aggregate
Every change is also handed to `persist(partition, key, value_or_None)` so the adapter can write
it to the changelog once per key per batch.

The invariant kept across a crash (SIGKILL at any instant). Durable things, per source partition P:
the changelog (a prefix of what was sent, in send order: one producer, one changelog partition per P),
the committed offset C of P, and the messages on agg.1m / feeds.late.
  I1  A window's stored state holds exactly the non-duplicate on-time readings of P for that window
      with offset <= its `max_offset` (records are absorbed in offset order).
  I2  The partition state's `applied_offset` A is sent after every window update it covers, so a
      changelog prefix that holds A holds all of them: a replayed record at offset <= A is skipped
      (it is in a window, or it was late and reported), never absorbed twice.
  I3  C <= A once both are durable: the adapter sends the changelog and flushes the producer before
      it commits offsets. Records in (C, A] are replayed and skipped by I2; after A they are new.
  I4  A window is forgotten (tombstoned) only after its aggregate is acknowledged on agg.1m, and
      the tombstone is sent after the partition state whose watermark closed it: a changelog prefix
      that lost the window also holds that watermark, so a replayed record of the window is judged
      late or skipped, never absorbed into a new partial window for an interval already closed.
  I5  Lateness depends on the order of records only: a reading is late when its window ends at or
      before the watermark as it stood when the reading came in. The watermark moves with event
      time, and with the clock only for a partition that is caught up (nothing left to read) and
      quiet: a partition not yet fetching after a restart is not idle, its backlog is not late.
What is not durable: the memory of recent event ids (duplicates). After a restart it holds only the
ids replayed since C, so an id re-sent before the crash and again after it can be counted twice in
the worker's own windows (live values, alerts). Stored aggregates do not depend on it: the sink
recomputes every closed or amended window from the stored raw readings (sinks/recompute.py).
Windows close from a timer (`due_windows`), driven by the watermark, never by the next event.
A late reading whose window is younger than the amend horizon is reported as `amend`: the sink then
recomputes that stored window; an older one is `too_late` (stored raw, counted, not aggregated).
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
    last_wall_ms: int = NO_TIME  # wall clock when its last record was absorbed: idle time survives a restart

    def encode(self) -> bytes:
        return orjson.dumps([self.applied_offset, self.max_event_ms, self.watermark_ms, self.last_wall_ms])

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
    topic: str = ""  # the source topic (with the partition: where the sink finds its raw readings)


@dataclass(slots=True)
class LateReading:
    reading: Reading
    offset: int
    watermark_ms: int
    amend: bool = True  # its window is within the amend horizon: the stored window is recomputed


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


def _window_of(key: bytes, raw: bytes) -> ClosedWindow:
    _, _end, topic, _part, feed, province, _dkey, start = key.decode().split("|")
    agg, dims = WindowAgg.decode(raw)
    return ClosedWindow(feed, province, dims, int(start), agg, topic)


TopicPartitionCheck = Callable[[str, int], bool]


class WindowEngine:
    def __init__(self, store: MutableMapping[bytes, bytes], persist: Persist, *, size_ms: int,
                 lateness_ms: int, idle_ms: int, recent: RecentIds | None = None,
                 amend_horizon_ms: int = 2 * 86_400_000) -> None:
        self.store = store
        self.persist = persist
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.idle_ms = idle_ms
        self.amend_horizon_ms = amend_horizon_ms
        self.recent = recent or RecentIds()
        self.behind_at_wall: dict[tuple[str, int], int] = {}  # not persisted: when a partition was last behind
        # Decoded windows, each with the stored bytes it was decoded from: with one reading per message a batch
        # touches each window about once, and decoding it from the store twice per reading was a third of
        # `apply`. The store stays the truth: an entry counts only while the store holds those very bytes.
        self.decoded: dict[bytes, tuple[bytes, WindowAgg, dict[str, str]]] = {}

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
        stored: dict[bytes, WindowAgg | None] = {}  # each touched window as stored before this batch
        size = self.size_ms
        guard = ps.applied_offset  # as at batch start: readings sharing one message share its offset
        wkeys: dict[tuple[int, str, str, tuple[tuple[str, str], ...]], bytes] = {}  # key text, built once
        series: dict[bytes, tuple[str, str, int]] = {}  # key -> feed, province, window start
        for offset, r in records:
            if offset <= guard:
                result.skipped_replayed += 1
                self.recent.seen(r.event_id)  # so a later duplicate of it is still recognised
                continue
            start = r.ts_ms - r.ts_ms % size
            end = start + size
            if end <= ps.watermark_ms:
                amend = end > ps.watermark_ms - self.amend_horizon_ms
                result.late.append(LateReading(r, offset, ps.watermark_ms, amend))
            else:
                ident = (start, r.feed, r.province, tuple(r.dims.items()))
                key = wkeys.get(ident)
                if key is None:
                    key = wkeys[ident] = _wkey(end, topic, partition, series_key(r.feed, r.province, r.dims_key),
                                               start)
                    series[key] = (r.feed, r.province, start)
                if key in stored:
                    before = stored[key]
                else:
                    before = stored[key] = self._stored_window(key)
                if before is not None and offset <= before.max_offset:
                    # absorbed before a restart (its window's changelog survived, the partition state may not
                    # have): skipped, but it moved the watermark then, so it moves it now (I5)
                    result.skipped_replayed += 1
                    self.recent.seen(r.event_id)
                elif self.recent.seen(r.event_id):
                    result.duplicates += 1
                    continue
                else:
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
            before = stored[key]
            if before is not None:
                dims = self.decoded[key][2]
                before.merge(agg)  # the decoded entry itself: it is stored again just below
                agg = before
            enc = agg.encode(dims)
            self.store[key] = enc
            self.decoded[key] = (enc, agg, dims)
            self.persist(partition, key, enc)
            feed, province, start = series[key]
            result.touched.append((key, ClosedWindow(feed, province, dims, start, agg, topic)))
        # Partition state last: if we crash before it lands, replay is guarded by the window offsets.
        ps.last_wall_ms = wall_ms
        self._save_partition(topic, partition, ps)
        self.behind_at_wall.pop((topic, partition), None)  # quiet time now counts from ps.last_wall_ms
        return result

    def _stored_window(self, key: bytes) -> WindowAgg | None:
        """The window's stored aggregate (decoded once per stored value), None when the store has none."""
        raw = self.store.get(key)
        if raw is None:
            self.decoded.pop(key, None)
            return None
        known = self.decoded.get(key)
        if known is not None and known[0] is raw:
            return known[1]
        agg, dims = WindowAgg.decode(raw)
        self.decoded[key] = (raw, agg, dims)
        return agg

    def advance_idle(self, wall_ms: int, caught_up: TopicPartitionCheck) -> None:
        """A partition that is caught up (`caught_up(topic, partition)`: nothing left to read) and has been
        quiet for `idle_ms` lets its watermark follow the wall clock from its last event. Quiet alone is
        not idle: after a restart, or behind a backlog, a partition is quiet because it is not read yet.
        Quiet time counts from the last record absorbed (kept in the partition state, so a worker restarted
        with nothing left to read closes its restored windows at once) or from when it was last behind."""
        for key in [k for k in self.store if k.startswith(b"p|")]:
            _, topic, part = key.decode().split("|")
            tp = (topic, int(part))
            if not caught_up(*tp):
                self.behind_at_wall[tp] = wall_ms  # the quiet time counts from when it is caught up
                continue
            ps = PartitionState.decode(self.store[key])
            quiet_since = max(ps.last_wall_ms, self.behind_at_wall.get(tp, NO_TIME))
            if quiet_since == NO_TIME:
                quiet_since = self.behind_at_wall[tp] = wall_ms
            idle = wall_ms - quiet_since
            if idle <= self.idle_ms or ps.max_event_ms == NO_TIME:
                continue
            candidate = ps.max_event_ms - self.lateness_ms + (idle - self.idle_ms)
            # follow the clock, never overtake it: after a reading stamped ahead of time (clock skew is
            # accepted up to MAX_FUTURE_S) the next on-time readings must not count as late
            candidate = min(candidate, wall_ms - self.lateness_ms)
            if candidate > ps.watermark_ms:
                ps.watermark_ms = candidate
                self._save_partition(topic, int(part), ps)

    def due_windows(self, owned: TopicPartitionCheck | None = None) -> list[tuple[bytes, int, ClosedWindow]]:
        """Windows whose end is at or before their partition's watermark: (key, partition, window).
        `owned` limits them to the partitions this worker processes (a standby copy is not closed here)."""
        watermarks: dict[tuple[str, int], int | None] = {}  # None: not owned
        due: list[tuple[bytes, int, ClosedWindow]] = []
        for key in list(self.store.keys()):
            if not key.startswith(b"w|"):
                continue
            _, end, topic, part, *_rest = key.decode().split("|")
            tp = (topic, int(part))
            if tp in watermarks:
                wm = watermarks[tp]
            else:  # once per partition: thousands of windows share a few partitions
                wm = watermarks[tp] = (self.partition_state(*tp).watermark_ms
                                       if owned is None or owned(*tp) else None)
            if wm is not None and int(end) <= wm:
                due.append((key, tp[1], _window_of(key, self.store[key])))
        due.sort(key=lambda d: (d[2].window_start_ms, d[0]))
        if len(self.decoded) > 2 * len(self.store):  # windows the store lost another way (a rebalance)
            self.decoded = {k: v for k, v in self.decoded.items() if k in self.store}
        return due

    def forget(self, key: bytes, partition: int) -> None:
        """Drop a window once its closed aggregate is durable downstream."""
        self.decoded.pop(key, None)
        if self.store.pop(key, None) is not None:
            self.persist(partition, key, None)

    def open_windows(self) -> int:
        return sum(1 for k in self.store if k.startswith(b"w|"))

