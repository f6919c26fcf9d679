"""The API process's state (built by the lifespan in api/app.py) and the typed dependency that hands it out.

Everything a router needs lives here, typed: nothing is added to `app.state` on the fly. The parts that
cost something to start (the Kafka producer, the overview snapshot, the wall hub) are created on first
use, once per process, by the methods below.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from controlroom.catalog import Catalog
from controlroom.kafka import ensure_topics, make_producer
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse

if TYPE_CHECKING:  # the routers' own types; they import this module
    from aiokafka import AIOKafkaProducer

    from api.alerts_stream import AlertFanout
    from api.auth import Security
    from api.overview_cache import OverviewCache
    from api.readonly_sql import AnalystQueries
    from api.report_events import ReportAnnouncer
    from api.scope import Scopes
    from api.wall_stream import WallHub


class EmbeddedSink(Protocol):
    """What the API reads of the embedded sink (sinks.writer.SinkWriter, started by api/app.py)."""

    @property
    def stats(self) -> Any: ...


@dataclass
class ApiState:
    settings: Settings
    catalog: Catalog
    warehouse: Warehouse
    security: Security
    analyst: AnalystQueries
    alert_fanout: AlertFanout
    scopes: Scopes
    sink: EmbeddedSink | None = None
    sink_task: asyncio.Task[None] | None = None
    base_rule_docs: list[dict[str, Any]] | None = None  # the rules file, read on first use
    report_announcer: ReportAnnouncer | None = None  # report submissions → the alerter (set by api/app.py)
    # per database read (api/scope.py): the project's, and each province scope's views; created on first use
    overview_caches: dict[str, OverviewCache] = field(default_factory=dict)
    wall_hubs: dict[str, WallHub] = field(default_factory=dict)
    province_hubs: dict[str, WallHub] = field(default_factory=dict)  # one per province page being watched
    _producer: AIOKafkaProducer | None = None
    _ready_topics: set[str] = field(default_factory=set)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def query(self, built: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Runs a built (sql, params) pair in a worker thread: warehouse calls block."""
        sql, params = built
        return await run_in_threadpool(self.warehouse.query, sql, params)

    async def database_for(self, request: Request) -> str:
        """The database the caller reads: the project's, or its provinces' views (api/scope.py). After `require`."""
        return await run_in_threadpool(self.scopes.database_for, getattr(request.state, "principal", None))

    async def producer(self, *topics: str) -> AIOKafkaProducer:
        """The API's Kafka producer, started on first use (reads need no broker); `topics` exist after."""
        async with self._lock:
            if self._producer is None:
                producer = make_producer(self.settings)
                try:
                    await producer.start()
                except BaseException:  # no broker: close what start() opened (a retry makes a new one)
                    await producer.stop()
                    raise
                self._producer = producer
            missing = [t for t in topics if t not in self._ready_topics]
            if missing:
                await ensure_topics(self.settings, missing)
                self._ready_topics.update(missing)
            return self._producer

    async def close(self) -> None:
        """Stops what this state started (the warehouse is closed by the lifespan, last)."""
        parts: list[AlertFanout | WallHub | OverviewCache] = [self.alert_fanout, *self.wall_hubs.values(),
                                                             *self.province_hubs.values(),
                                                             *self.overview_caches.values()]
        for part in parts:
            await part.close()
        if self.report_announcer is not None:
            await self.report_announcer.close()
        if self._producer is not None:
            await self._producer.stop()
        await asyncio.to_thread(self.analyst.close)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]
