"""The worker's crash invariants (streams/windows.py I1–I5) against every kind of crash point, seeded.

A model of the worker's durable world: the changelog (a list of (partition, key, value) in send order),
the committed source offset, and what went out on agg.1m and feeds.late. The worker absorbs batches,
writes the coalesced changelog before committing offsets (streams/changelog.py), closes windows
(publish, then forget, then write the tombstones) — and crashes at random moments, including in the
middle of a changelog write (only a prefix of it lands) and between publishing a window and forgetting
it. After a crash the state is rebuilt from the changelog and the source is read again from the
committed offset. Oracle: the last aggregate published for every window, and the set of late readings,
equal those of one run without crashes.
"""

from __future__ import annotations

import random

import pytest

from controlroom.schema import Reading
from streams.changelog import ChangelogBuffer
from streams.windows import WindowEngine

MIN = 60_000
T0 = 1_767_225_600_000
TOPIC = "feeds.water_level"


def source(rng: random.Random, n: int) -> list[tuple[int, Reading]]:
    """One partition's records: event time mostly in order, some a few seconds back, some minutes late."""
    out, ts = [], T0
    for offset in range(n):
        ts += rng.randint(0, 4_000)
        r = rng.random()
        at = ts - rng.randint(60_000, 180_000) if r < 0.05 else ts - rng.randint(0, 9_000) if r < 0.3 else ts
        province = rng.choice(["01", "79", "31"])
        out.append((offset, Reading(f"e{offset}", "water_level", province, at, float(rng.randint(0, 500)),
                                    {"station": rng.choice(["s1", "s2"])}, "test", province)))
    return out


class World:
    """Durable things only: they survive a crash."""

    def __init__(self) -> None:
        self.changelog: list[tuple[int, bytes, bytes | None]] = []
        self.committed = 0  # next source offset to read
        self.published: dict[tuple[str, str, str, int], tuple[int, float, float, float, float]] = {}
        self.late: set[str] = set()

    def restore(self) -> dict[bytes, bytes]:
        store: dict[bytes, bytes] = {}
        for _p, key, value in self.changelog:
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        return store


class Worker:
    def __init__(self, world: World) -> None:
        self.world = world
        self.buffer = ChangelogBuffer()
        self.engine = WindowEngine(world.restore(), self.buffer.persist, size_ms=MIN, lateness_ms=10_000,
                                   idle_ms=5_000)
        self.position = world.committed

    def absorb(self, records: list[tuple[int, Reading]]) -> None:
        res = self.engine.apply(TOPIC, 0, records, wall_ms=0)
        self.world.late.update(lr.reading.event_id for lr in res.late)
        if records:
            self.position = records[-1][0] + 1

    def write_changelog(self, cut: int | None = None) -> bool:
        """Send what waits; `cut`: crash after that many records landed. True when all of it landed."""
        entries = self.buffer.take()
        self.world.changelog.extend(entries[:cut] if cut is not None else entries)
        return cut is None or cut >= len(entries)

    def commit(self, cut: int | None = None) -> bool:
        if not self.write_changelog(cut):
            return False
        self.world.committed = self.position
        return True

    def close(self, rng: random.Random, crash: bool) -> bool:
        due = self.engine.due_windows()
        for _key, _p, w in due:
            ident = (w.feed, w.province, w.dims["station"], w.window_start_ms)
            self.world.published[ident] = (w.agg.count, w.agg.total, w.agg.vmin, w.agg.vmax, w.agg.last)
        if crash and due and rng.random() < 0.3:
            return False  # published, not forgotten
        for key, p, _w in due:
            self.engine.forget(key, p)
        return self.write_changelog(rng.randint(0, 6) if crash else None)


def run(seed: int, records: list[tuple[int, Reading]], crashes: bool) -> World:
    rng = random.Random(seed)
    world = World()
    worker = Worker(world)
    steps = 0
    while True:
        steps += 1
        assert steps < 50_000, "no progress"
        crash = crashes and rng.random() < 0.08
        action = rng.random()
        if worker.position < len(records) and action < 0.6:
            take = rng.randint(1, 12)
            worker.absorb(records[worker.position:worker.position + take])
            if crash:
                worker = Worker(world)
        elif action < 0.8:
            if not worker.commit(rng.randint(0, 8) if crash else None) or crash:
                worker = Worker(world)
        else:
            if not worker.close(rng, crash) or crash:
                worker = Worker(world)
        if worker.position >= len(records) and not crash and rng.random() < 0.2:
            break
    # the end of the stream: a reading far ahead moves the watermark past every window; all closes land
    worker.absorb([(len(records), Reading("end", "water_level", "01", T0 + 10_000 * MIN, 0.0,
                                          {"station": "s9"}, "test", "01"))])
    worker.commit()
    worker.close(rng, crash=False)
    return world


@pytest.mark.parametrize("seed", range(300))
def test_crashes_anywhere_change_no_published_window_and_no_lateness(seed: int) -> None:
    records = source(random.Random(seed), 250)
    truth = run(seed, records, crashes=False)
    crashed = run(seed, records, crashes=True)
    assert crashed.late == truth.late, f"seed {seed}: late readings differ"
    assert crashed.published == truth.published, f"seed {seed}: published windows differ"
    # nothing lost: every reading is in a window or late (the end reading stays open)
    assert sum(c for c, *_ in truth.published.values()) + len(truth.late) == len(records)
