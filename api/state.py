"""The API process's state (set by the lifespan in api/app.py) and the typed dependency that hands it out."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from controlroom.catalog import Catalog
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse


class EmbeddedSink(Protocol):
    """What the API reads of the embedded sink (sinks.writer.SinkWriter, started by api/app.py)."""

    @property
    def stats(self) -> Any: ...


@dataclass
class ApiState:
    settings: Settings
    catalog: Catalog
    warehouse: Warehouse
    sink: EmbeddedSink | None = None
    sink_task: asyncio.Task[None] | None = None

    async def query(self, built: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Runs a built (sql, params) pair in a worker thread: warehouse calls block."""
        sql, params = built
        return await run_in_threadpool(self.warehouse.query, sql, params)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(api_state)]
