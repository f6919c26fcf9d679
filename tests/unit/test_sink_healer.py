"""The sink's check of closed windows (sinks/healer.py): which windows it checks when, what it commits, what it
calls stale. Pure; the healer on a real broker and chDB is in tests/integration/test_sink.py."""

from __future__ import annotations

import random

import pyarrow as pa

from sinks.healer import Healer, WindowKey, stale, windows_of
from sinks.rows import READINGS, SCHEMAS

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z
TOPIC = "feeds.water_level"


def readings_table(rows: list[tuple[str, int, int, int]]) -> pa.Table:
    """(dims_key, ts, partition, offset) → a readings table as the sink builds it."""
    cols: dict[str, list] = {name: [] for name in SCHEMAS[READINGS].names}
    for dims_key, ts, partition, offset in rows:
        values = {"event_id": f"e{offset}", "feed": "water_level", "province": "01", "province_original": "01",
                  "ts": ts, "value": 1.0, "dims": [("station", dims_key)], "dims_key": dims_key, "source": "t",
                  "ingested_at": ts, "kafka_topic": TOPIC, "kafka_partition": partition, "kafka_offset": offset,
                  "commune": "", "agency": "hydromet"}
        for name in cols:
            cols[name].append(values[name])
    return pa.Table.from_pydict(cols, schema=SCHEMAS[READINGS])


def key(dims_key: str, ws: int, partition: int = 0) -> WindowKey:
    return ("water_level", "01", dims_key, ws, TOPIC, partition)


def healer(**kw: int) -> Healer:
    args = {"window_ms": MIN, "lateness_ms": 10_000, "idle_ms": 5_000, "heal_after_ms": 60_000,
            "amend_horizon_ms": 2 * 86_400_000} | kw
    return Healer(**args)


def test_windows_of_groups_by_series_window_and_partition() -> None:
    rows = [("a", T0 + 1_000, 0, 5), ("a", T0 + 59_999, 0, 9), ("a", T0 + 60_000, 0, 10), ("b", T0 + 2_000, 0, 7),
            ("a", T0 + 3_000, 1, 2)]
    got = sorted(windows_of(readings_table(rows), MIN))
    assert got == sorted([(key("a", T0), 5, 9, T0 + 59_999), (key("a", T0 + MIN), 10, 10, T0 + 60_000),
                          (key("b", T0), 7, 7, T0 + 2_000), (key("a", T0, 1), 2, 2, T0 + 3_000)])
    assert windows_of(readings_table([]), MIN) == []


def test_a_window_is_checked_heal_after_its_close_by_watermark() -> None:
    h = healer()
    wall = 1_000_000_000_000  # the clock: far after the event times (a replay), so only the watermark decides
    h.stored([(key("a", T0), 3, 4, T0 + 30_000)], wall)
    assert h.due(wall + 1_000) == []  # the partition's newest event is inside the window: open
    h.stored([(key("b", T0 + MIN), 5, 5, T0 + MIN + 10_000)], wall + 1_000)  # watermark at T0 + 60 s: closes a
    assert h.due(wall + 2_000) == []  # closed now, checked heal_after later
    assert h.due(wall + 2_000 + 59_999) == []
    assert h.due(wall + 2_000 + 60_000) == [key("a", T0)]
    assert h.commit_caps() == {(TOPIC, 0): 3}
    h.checked([key("a", T0)])
    assert h.commit_caps() == {(TOPIC, 0): 5}


def test_a_quiet_partition_closes_its_windows_by_the_clock() -> None:
    h = healer()
    wall = T0 + 30_000  # live: the clock is in the window
    h.stored([(key("a", T0), 1, 1, T0 + 20_000)], wall)
    assert h.due(T0 + 69_999) == []  # end + lateness not reached
    assert h.due(T0 + 70_000) == []  # closed here (quiet 40 s); checked 60 s on
    assert h.due(T0 + 130_000) == [key("a", T0)]


def test_a_new_reading_in_a_closed_window_restarts_its_wait() -> None:
    h = healer()
    wall = T0 + 30_000
    h.stored([(key("a", T0), 1, 1, T0 + 20_000)], wall)
    assert h.due(T0 + 100_000) == []  # closed at 100 s
    h.stored([(key("a", T0), 9, 9, T0 + 21_000)], T0 + 150_000)  # a late reading: the worker amends first
    assert h.due(T0 + 160_000) == []
    assert h.due(T0 + 219_999) == []  # seen closed again at 160 s (quiet since 150 s): checked 60 s on
    assert h.due(T0 + 220_000) == [key("a", T0)]
    assert h.commit_caps() == {(TOPIC, 0): 1}


def test_windows_past_the_amend_horizon_are_left_to_backfill() -> None:
    h = healer(amend_horizon_ms=3_600_000)
    wall = 1_000_000_000_000
    h.stored([(key("old", T0), 1, 1, T0 + 1_000)], wall)
    h.stored([(key("new", T0 + 2 * 3_600_000), 2, 2, T0 + 2 * 3_600_000 + 50_000)], wall)
    assert h.due(wall) == []
    assert list(h.pending) == [key("new", T0 + 2 * 3_600_000)]
    assert h.commit_caps() == {(TOPIC, 0): 2}


def test_revoked_partitions_are_forgotten() -> None:
    h = healer()
    h.stored([(key("a", T0, 0), 1, 1, T0), (key("a", T0, 1), 4, 6, T0)], T0)
    h.drop_partitions({(TOPIC, 1)})
    assert h.commit_caps() == {(TOPIC, 0): 1}


def test_commit_caps_are_the_lowest_unchecked_offset_in_any_order() -> None:
    rng = random.Random(7)
    for _ in range(50):
        h = healer()
        offsets: dict[WindowKey, list[int]] = {}
        for off in rng.sample(range(1000), 40):
            k = key(rng.choice("abc"), T0 + rng.randrange(5) * MIN, rng.randrange(2))
            offsets.setdefault(k, []).append(off)
            h.stored([(k, off, off, T0)], T0)
        done = rng.sample(sorted(offsets), len(offsets) // 2)
        h.checked(done)
        want: dict[tuple[str, int], int] = {}
        for k, offs in offsets.items():
            if k not in done:
                want[(TOPIC, k[5])] = min(want.get((TOPIC, k[5]), 10**9), min(offs))
        assert h.commit_caps() == want


def test_stale_compares_count_and_revision() -> None:
    a, b, c, d = key("a", T0), key("b", T0), key("c", T0), key("d", T0)
    readings = {a: (3, 10), b: (2, 7), c: (1, 4)}  # d: no reading left
    stored = {("water_level", "01", "a", T0, 0): (3, 10),  # equal
              ("water_level", "01", "b", T0, 0): (2, 6)}  # an older recompute; c: missing
    assert stale([a, b, c, d], readings, stored) == [b, c]
