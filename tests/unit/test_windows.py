"""Window arithmetic, watermark and lateness on plain data (no Faust, no Kafka)."""

from __future__ import annotations

from controlroom.schema import Reading
from streams.windows import NO_TIME, WindowAgg, WindowEngine, window_start

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a window boundary


def reading(ts: int, value: float, eid: str, province: str = "01",
            dims: dict[str, str] | None = None) -> Reading:
    return Reading(eid, "water_level", province, ts, value, dims or {"station": "s1"}, "test", province)


class Log:
    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes, bytes | None]] = []

    def __call__(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.writes.append((partition, key, value))


def engine(store: dict[bytes, bytes] | None = None, log: Log | None = None,
           idle_ms: int = 5_000) -> WindowEngine:
    return WindowEngine({} if store is None else store, log or Log(), size_ms=MIN, lateness_ms=10_000,
                        idle_ms=idle_ms)


def closed(e: WindowEngine) -> list[tuple[int, int, float, float, float, float]]:
    out = []
    for key, part, w in e.due_windows():
        out.append((w.window_start_ms, w.agg.count, w.agg.total, w.agg.vmin, w.agg.vmax, w.agg.last))
        e.forget(key, part)
    return out


def test_window_start_boundaries() -> None:
    assert window_start(T0, MIN) == T0
    assert window_start(T0 + MIN - 1, MIN) == T0
    assert window_start(T0 + MIN, MIN) == T0 + MIN
    assert window_start(-1, MIN) == -MIN  # before 1970 floors down, not toward zero


def test_aggregates_and_close_by_watermark() -> None:
    e = engine()
    recs = [(0, reading(T0 + 1_000, 10, "a")), (1, reading(T0 + 59_999, 30, "b")),
            (2, reading(T0 + 30_000, 20, "c"))]
    e.apply("feeds.water_level", 0, recs, wall_ms=0)
    assert e.due_windows() == []  # watermark = 59.999 s - 10 s: window [0, 60) still open
    # an event at 70 s moves the watermark to exactly 60 s: the first window closes
    e.apply("feeds.water_level", 0, [(3, reading(T0 + MIN + 10_000, 5, "d"))], wall_ms=1)
    assert closed(e) == [(T0, 3, 60.0, 10.0, 30.0, 30.0)]  # last = value with the latest event time
    assert e.open_windows() == 1


def test_late_reading_is_reported_not_aggregated() -> None:
    e = engine()
    e.apply("t", 0, [(0, reading(T0 + 5_000, 1, "a")), (1, reading(T0 + 2 * MIN + 15_000, 1, "b"))], 0)
    res = e.apply("t", 0, [(2, reading(T0 + 6_000, 99, "late"))], 0)
    assert [lr.reading.event_id for lr in res.late] == ["late"]
    assert res.late[0].watermark_ms == T0 + 2 * MIN + 5_000
    assert closed(e) == [(T0, 1, 1.0, 1.0, 1.0, 1.0)]


def test_lateness_depends_on_order_not_on_batching() -> None:
    recs = [(0, reading(T0 + 1_000, 1, "a")), (1, reading(T0 + MIN + 20_000, 2, "b")),
            (2, reading(T0 + 50_000, 3, "c")), (3, reading(T0 + 3 * MIN, 4, "d"))]
    one = engine()
    late_one = [lr.reading.event_id for lr in one.apply("t", 0, recs, 0).late]
    many = engine()
    late_many = [lr.reading.event_id for r in recs for lr in many.apply("t", 0, [r], 0).late]
    assert late_one == late_many == ["c"]  # c's window ends at 60 s; b already moved the watermark to 70 s
    assert closed(one) == closed(many)


def test_reading_exactly_at_watermark_boundary_is_late() -> None:
    e = engine()
    e.apply("t", 0, [(0, reading(T0 + MIN + 10_001, 1, "a"))], 0)  # watermark = 60.001 s
    late = e.apply("t", 0, [(1, reading(T0 + 59_000, 1, "b"))], 0).late
    assert [lr.reading.event_id for lr in late] == ["b"]


def test_duplicate_event_id_counted_once() -> None:
    e = engine()
    res = e.apply("t", 0, [(0, reading(T0, 5, "x")), (1, reading(T0, 5, "x"))], 0)
    assert (res.applied, res.duplicates) == (1, 1)


def test_replay_after_crash_is_exact() -> None:
    """Changelog ahead of committed offsets: replayed records are skipped, new ones applied."""
    store: dict[bytes, bytes] = {}
    first = engine(store)
    batch1 = [(0, reading(T0 + 1_000, 1, "a")), (1, reading(T0 + 2_000, 2, "b"))]
    first.apply("t", 0, batch1, 0)
    # crash: offsets were never committed, the worker restarts on the same changelog store
    second = engine(store)
    res = second.apply("t", 0, [*batch1, (2, reading(T0 + 3_000, 3, "c"))], 0)
    assert (res.applied, res.skipped_replayed) == (1, 2)
    second.apply("t", 0, [(3, reading(T0 + 2 * MIN, 0, "z"))], 0)
    assert closed(second)[0] == (T0, 3, 6.0, 1.0, 3.0, 3.0)


def test_replay_when_only_window_state_landed() -> None:
    """Crash after the window's changelog write but before the partition state's: still exact."""
    store: dict[bytes, bytes] = {}
    log = Log()
    e = engine(store, log)
    e.apply("t", 0, [(0, reading(T0 + 1_000, 1, "a"))], 0)
    partial = {k: v for _, k, v in log.writes if k.startswith(b"w|") and v is not None}
    again = engine(dict(partial))
    res = again.apply("t", 0, [(0, reading(T0 + 1_000, 1, "a")), (1, reading(T0 + 2_000, 4, "b"))], 0)
    assert (res.applied, res.skipped_replayed) == (1, 1)
    again.apply("t", 0, [(2, reading(T0 + 2 * MIN, 0, "z"))], 0)
    assert closed(again)[0] == (T0, 2, 5.0, 1.0, 4.0, 4.0)


def test_readings_sharing_one_message_offset_are_all_applied() -> None:
    e = engine()
    res = e.apply("t", 0, [(7, reading(T0 + 1, 1, "a")), (7, reading(T0 + 2, 2, "b")),
                           (7, reading(T0 + 3, 3, "c", province="79"))], 0)
    assert res.applied == 3
    again = e.apply("t", 0, [(7, reading(T0 + 1, 1, "a"))], 0)  # the same message replayed
    assert again.skipped_replayed == 1 and again.applied == 0


def test_series_are_separate_windows() -> None:
    e = engine()
    e.apply("t", 0, [(0, reading(T0, 1, "a", dims={"station": "s1"})),
                     (1, reading(T0, 2, "b", dims={"station": "s2"})),
                     (2, reading(T0, 4, "c", province="79"))], 0)
    e.apply("t", 0, [(3, reading(T0 + 2 * MIN, 0, "z"))], 0)
    wins = sorted((w.province, w.dims["station"], w.agg.total) for _, _, w in e.due_windows())
    assert wins == [("01", "s1", 1.0), ("01", "s2", 2.0), ("79", "s1", 4.0)]


def caught_up(topic: str, partition: int) -> bool:
    return True


def test_idle_partition_watermark_follows_clock() -> None:
    e = engine(idle_ms=5_000)
    e.apply("t", 0, [(0, reading(T0 + 30_000, 1, "a"))], wall_ms=(T0 + 30_000))
    e.advance_idle((T0 + 30_000) + 5_000, caught_up)
    assert e.due_windows() == []  # not idle long enough yet
    # watermark = 30 s - 10 s + (idle - 5 s): reaches 60 s after 45 s of silence
    e.advance_idle((T0 + 30_000) + 44_999, caught_up)
    assert e.due_windows() == []
    e.advance_idle((T0 + 30_000) + 45_000, caught_up)
    assert [w.agg.count for _, _, w in e.due_windows()] == [1]


def test_a_partition_with_a_backlog_is_not_idle() -> None:
    """After a restart the worker may not read a partition for a while (recovery, other partitions' backlog):
    quiet is not idle while records wait. Its watermark must not follow the clock, or the backlog turns late."""
    store: dict[bytes, bytes] = {}
    wall = T0 + 30_000
    engine(store).apply("t", 0, [(0, reading(T0 + 30_000, 1, "a"))], wall_ms=wall)
    restarted = engine(store, idle_ms=5_000)
    for later in (10_000, 60_000, 300_000):  # minutes pass while partition 0 is not read
        restarted.advance_idle(wall + later, lambda topic, partition: False)
    assert restarted.partition_state("t", 0).watermark_ms == T0 + 20_000  # from event time only
    res = restarted.apply("t", 0, [(1, reading(T0 + 40_000, 2, "backlog"))], wall_ms=wall + 300_000)
    assert res.late == [] and res.applied == 1
    # caught up now: the quiet time counts from here, not from the last record before the restart
    restarted.advance_idle(wall + 300_001, caught_up)
    assert restarted.partition_state("t", 0).watermark_ms == T0 + 30_000
    restarted.advance_idle(wall + 300_000 + 5_000 + 40_000, caught_up)
    assert [w.agg.count for _, _, w in restarted.due_windows()] == [2]


def test_a_worker_restarted_with_nothing_to_read_closes_restored_windows_from_the_last_records_time() -> None:
    """The partition has been quiet since its last record (wall clock kept in its state); a restarted worker
    that is caught up need not wait a whole window again before closing what it restored."""
    store: dict[bytes, bytes] = {}
    wall = T0 + 2_000
    engine(store).apply("t", 0, [(0, reading(T0 + 2_000, 1, "a"))], wall_ms=wall)
    restarted = engine(store, idle_ms=5_000)
    restarted.advance_idle(wall + 75_000, caught_up)  # back 75 s after the last record, nothing new to read
    assert [w.agg.count for _, _, w in restarted.due_windows()] == [1]


def test_standby_windows_are_not_closed_here() -> None:
    e = engine()
    e.apply("t", 0, [(0, reading(T0, 1, "a"))], 0)
    e.apply("t", 1, [(0, reading(T0, 2, "b"))], 0)
    e.apply("t", 0, [(1, reading(T0 + 2 * MIN, 0, "z0"))], 0)
    e.apply("t", 1, [(1, reading(T0 + 2 * MIN, 0, "z1"))], 0)
    mine = e.due_windows(lambda topic, partition: partition == 0)
    assert [(p, w.agg.total, w.topic) for _, p, w in mine] == [(0, 1.0, "t")]


def test_late_reading_within_the_amend_horizon_amends_older_is_too_late() -> None:
    e = WindowEngine({}, Log(), size_ms=MIN, lateness_ms=10_000, idle_ms=5_000, amend_horizon_ms=10 * MIN)
    e.apply("t", 0, [(0, reading(T0 + 20 * MIN, 1, "now"))], 0)  # watermark 20 min - 10 s
    res = e.apply("t", 0, [(1, reading(T0 + 15 * MIN, 1, "5-min-late")), (2, reading(T0 + 5 * MIN, 1, "old"))], 0)
    assert [(lr.reading.event_id, lr.amend) for lr in res.late] == [("5-min-late", True), ("old", False)]



def test_idle_watermark_never_overtakes_the_clock() -> None:
    """A reading stamped two minutes ahead (accepted clock skew) must not make on-time readings late."""
    e = engine(idle_ms=5_000)
    wall = T0
    e.apply("t", 0, [(0, reading(T0 + 120_000, 1, "ahead"))], wall_ms=wall)
    e.advance_idle(wall + 60_000, caught_up)  # a minute of silence
    assert e.partition_state("t", 0).watermark_ms == T0 + 110_000  # from the reading itself, not beyond
    e.advance_idle(wall + 200_000, caught_up)
    assert e.partition_state("t", 0).watermark_ms == wall + 200_000 - 10_000  # the clock minus lateness
    late = e.apply("t", 0, [(1, reading(wall + 200_000, 2, "on-time"))], wall_ms=wall + 200_000).late
    assert late == []

def test_state_round_trips_through_bytes() -> None:
    agg = WindowAgg.first(1.5, T0, 3)
    agg.add(-2.0, T0 + 5, 4)
    back, dims = WindowAgg.decode(agg.encode({"station": "s1"}))
    assert back == agg and dims == {"station": "s1"}
    assert engine().partition_state("t", 0).watermark_ms == NO_TIME


def test_duplicate_of_a_replayed_reading_is_still_dropped() -> None:
    """After a restart the original is skipped by the replay guard; its later duplicate must not count."""
    store: dict[bytes, bytes] = {}
    engine(store).apply("t", 0, [(0, reading(T0 + 1_000, 1, "a"))], 0)
    again = engine(store)  # new process: empty memory of recent ids
    res = again.apply("t", 0, [(0, reading(T0 + 1_000, 1, "a")), (1, reading(T0 + 1_000, 1, "a"))], 0)
    assert (res.applied, res.skipped_replayed, res.duplicates) == (0, 1, 1)


def test_apply_reports_each_touched_window_as_it_now_stands() -> None:
    e = engine()
    e.apply("t", 0, [(0, reading(T0 + 1_000, 5, "a"))], wall_ms=T0)
    r = e.apply("t", 0, [(1, reading(T0 + 2_000, 7, "b")), (2, reading(T0 + 3_000, 1, "c"))], wall_ms=T0)
    [(key, w)] = r.touched
    assert key.startswith(b"w|") and (w.window_start_ms, w.agg.count, w.agg.vmax, w.agg.last) == (T0, 3, 7, 1)
