"""The shared /overview snapshot: one computation for concurrent requests, stale served while one refresh
runs, never older than the stale limit, a failed refresh retried (api/overview_cache.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from api.overview_cache import OverviewCache


class Source:
    """compute() returns {"n": k} for the k-th call; `gate` holds a computation until it is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def compute(self) -> dict[str, Any]:
        self.calls += 1
        n = self.calls
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("warehouse unavailable")
        return {"n": n}


async def test_concurrent_requests_share_one_computation() -> None:
    src = Source()
    src.gate.clear()
    cache = OverviewCache(src.compute, refresh_s=60, max_stale_s=60)
    waiting = [asyncio.create_task(cache.get()) for _ in range(20)]
    await asyncio.sleep(0)
    src.gate.set()
    snaps = await asyncio.gather(*waiting)
    assert src.calls == 1 and cache.computed == 1
    assert {s.body for s in snaps} == {b'{"n":1}'}
    assert (await cache.get()).doc == {"n": 1} and src.calls == 1  # fresh: served without a query


async def test_stale_snapshot_served_while_one_refresh_runs() -> None:
    src = Source()
    cache = OverviewCache(src.compute, refresh_s=0.01, max_stale_s=60)
    assert (await cache.get()).doc == {"n": 1}
    await asyncio.sleep(0.02)  # older than refresh_s
    src.gate.clear()
    stale = [await cache.get() for _ in range(5)]  # none of them waits for the refresh
    await asyncio.sleep(0)  # let the refresh task start
    assert [s.doc for s in stale] == [{"n": 1}] * 5 and src.calls == 2  # one refresh, not five
    src.gate.set()
    for _ in range(100):
        await asyncio.sleep(0.001)
        if cache.computed == 2:
            break
    assert (await cache.get()).doc == {"n": 2}


async def test_past_the_stale_limit_a_request_waits_for_fresh_figures() -> None:
    src = Source()
    cache = OverviewCache(src.compute, refresh_s=0.01, max_stale_s=0.01)
    first = await cache.get()
    await asyncio.sleep(0.02)
    second = await cache.get()
    assert (first.doc, second.doc) == ({"n": 1}, {"n": 2})
    assert second.computed_at > first.computed_at and second.age_s() < 60


async def test_failed_refresh_keeps_the_last_figures_then_retries(caplog: pytest.LogCaptureFixture) -> None:
    src = Source()
    cache = OverviewCache(src.compute, refresh_s=0.01, max_stale_s=60)
    await cache.get()
    await asyncio.sleep(0.02)
    src.fail = True
    assert (await cache.get()).doc == {"n": 1}  # stale but true; the refresh fails in the background
    await asyncio.sleep(0.01)
    assert cache.computed == 1 and cache.latest is not None and cache.latest.doc == {"n": 1}
    src.fail = False
    await cache.get()  # the next request starts a new refresh
    deadline = time.monotonic() + 5
    while cache.computed < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert cache.latest.doc == {"n": 3}


async def test_no_snapshot_and_a_failure_is_the_requests_error() -> None:
    src = Source()
    src.fail = True
    cache = OverviewCache(src.compute, refresh_s=1, max_stale_s=1)
    with pytest.raises(RuntimeError, match="warehouse unavailable"):
        await cache.get()
    await cache.close()


async def test_the_wall_waits_for_figures_no_older_than_the_refresh() -> None:
    src = Source()
    cache = OverviewCache(src.compute, refresh_s=0.01, max_stale_s=60)
    await cache.get()
    await asyncio.sleep(0.02)
    assert (await cache.get(wait=True)).doc == {"n": 2}
