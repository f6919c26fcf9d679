"""One /overview computation shared by every request and the live wall.

/overview answers from the latest snapshot while it is younger than OVERVIEW_REFRESH_S; an older one is
still served (at most OVERVIEW_MAX_STALE_S old) while a single background refresh computes the next, so
no request waits behind the warehouse and a hundred screens cost one query every refresh. Past the
stale limit (or before the first snapshot) the request waits for the fresh computation. The figures are
never altered: `generated_at` in the body is the moment they were computed, and the `Age` header says
how old they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import Request

from api.overview import read_overview
from api.scope import provinces_of, scoped_catalog
from api.state import api_state
from controlroom.logs import get_logger
from controlroom.schema import now_ms

log = get_logger("api.overview")


@dataclass(frozen=True, slots=True)
class Snapshot:
    doc: dict[str, Any]
    body: bytes  # serialised once, served as is
    computed_at: float  # time.monotonic()

    def age_s(self) -> float:
        return time.monotonic() - self.computed_at


def _log_failure(task: asyncio.Task[Snapshot]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:  # the next request tries again
        log.error("overview refresh failed", error=str(exc)[:300])


class OverviewCache:
    def __init__(self, compute: Callable[[], Awaitable[dict[str, Any]]], refresh_s: float,
                 max_stale_s: float) -> None:
        self.compute = compute
        self.refresh_s = refresh_s
        self.max_stale_s = max(max_stale_s, refresh_s)
        self.latest: Snapshot | None = None
        self.computed = 0  # computations so far (tests check requests share them)
        self._running: asyncio.Task[Snapshot] | None = None

    async def get(self, *, wait: bool = False) -> Snapshot:
        """The latest snapshot; `wait`: never one older than refresh_s (the wall, which refreshes itself
        every few seconds and must not show figures a refresh behind)."""
        snap = self.latest
        if snap is not None and snap.age_s() < self.refresh_s:
            return snap
        task = self._refresh()
        if snap is not None and snap.age_s() < self.max_stale_s and not wait:
            return snap  # the refresh runs on; this request does not wait for it
        return await asyncio.shield(task)

    def _refresh(self) -> asyncio.Task[Snapshot]:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._compute(), name="overview-refresh")
            self._running.add_done_callback(_log_failure)
        return self._running

    async def _compute(self) -> Snapshot:
        doc = await self.compute()
        snap = Snapshot(doc, orjson.dumps(doc), time.monotonic())
        self.latest, self.computed = snap, self.computed + 1
        return snap

    async def close(self) -> None:
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # shutting down: nothing to report
                await self._running


async def overview_cache(request: Request) -> OverviewCache:
    """The snapshot shared by every caller reading the same database (national, or one province scope: api/scope.py),
    created on first use."""
    state = api_state(request)
    database = await state.database_for(request)
    cache = state.overview_caches.get(database)
    if cache is None:
        catalog = scoped_catalog(state.catalog, provinces_of(getattr(request.state, "principal", None)))
        cache = OverviewCache(lambda: read_overview(state.query, database, catalog, now_ms()),
                              state.settings.overview_refresh_s, state.settings.overview_max_stale_s)
        state.overview_caches[database] = cache
    return cache
