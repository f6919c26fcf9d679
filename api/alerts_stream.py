"""GET /alerts/stream: alert events live, as Server-Sent Events, for wall screens and scripts.

One Kafka consumer per API process reads topic `alerts` from the end and fans each event out to
every connected client's queue (no polling storm, however many screens are open). A slow client
whose queue fills loses the oldest events and is told so, never the process's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import require
from api.sse import sse_frame, sse_response
from api.state import api_state
from controlroom.catalog import NATIONAL
from controlroom.kafka import make_consumer
from controlroom.logs import get_logger
from controlroom.schema import ALERTS_TOPIC, SEVERITIES, MessageError, read_alert_event
from controlroom.security import Principal
from controlroom.settings import Settings

log = get_logger("alerts.stream")
router = APIRouter(tags=["alerts"])
QUEUE_SIZE = 1000


class AlertFanout:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.clients: set[asyncio.Queue[Mapping[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()  # set once the consumer is positioned at the end of the topic

    def subscribe(self) -> asyncio.Queue[Mapping[str, Any]]:
        queue: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.clients.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._consume(), name="alerts-fanout")
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Mapping[str, Any]]) -> None:
        self.clients.discard(queue)

    def publish(self, event: Mapping[str, Any]) -> None:
        for queue in list(self.clients):
            if queue.full():  # a stalled screen: drop its oldest event rather than grow without bound
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                    queue.put_nowait({"event": "dropped", "reason": "client too slow"})
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(event)

    async def _consume(self) -> None:
        consumer = make_consumer(self.settings, ALERTS_TOPIC, offset_reset="latest")
        try:
            await consumer.start()
            await consumer.seek_to_end()
            self.ready.set()
            while self.clients:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        try:
                            self.publish(read_alert_event(record.value))
                        except MessageError as exc:
                            log.warning("unreadable alert event", offset=record.offset, error=str(exc)[:200])
        except Exception as exc:  # the broker went away: end the streams; clients reconnect (SSE retry)
            log.error("alert stream consumer failed", error=str(exc)[:300])
        finally:
            self.ready.clear()
            await consumer.stop()
            for queue in list(self.clients):
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait({"event": "closed"})

    async def close(self) -> None:
        self.clients.clear()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)


def _wanted(event: Mapping[str, Any], severity: str | None, feed: str | None, province: str | None,
            allowed: frozenset[str] = frozenset()) -> bool:
    """`allowed`: a province-scoped key's provinces (empty: national). Live events come from Kafka, not ClickHouse,
    so the scope is applied here, to the event's own province, before anything is sent."""
    if event.get("event") in ("dropped", "closed"):
        return True
    if allowed and event.get("province") not in allowed and event.get("province") != NATIONAL:
        return False
    if severity and SEVERITIES.index(event.get("severity", "info")) < SEVERITIES.index(severity):
        return False
    return (not feed or event.get("feed") == feed) and (not province or event.get("province") == province)


def sse(event: Mapping[str, Any]) -> bytes:
    ident = f"{event['alert_id']}:{event['seq']}" if "alert_id" in event and "seq" in event else None
    return sse_frame(event.get("event", "message"), event, ident)


@router.get("/alerts/stream", summary="Alert events live (Server-Sent Events)",
            responses={200: {"content": {"text/event-stream": {}}}})
async def alerts_stream(request: Request, who: Annotated[Principal, Depends(require("viewer"))],
                        severity: Annotated[str | None, Query(pattern="^(info|warning|critical)$")] = None,
                        feed: Annotated[str | None, Query(max_length=64)] = None,
                        province: Annotated[str | None, Query(max_length=8)] = None) -> StreamingResponse:
    fanout = api_state(request).alert_fanout
    queue = fanout.subscribe()

    def render(event: Mapping[str, Any]) -> tuple[bytes | None, bool]:
        wanted = _wanted(event, severity, feed, province, who.provinces)
        return (sse(event) if wanted else None), event.get("event") == "closed"

    return sse_response(request, queue, lambda: fanout.unsubscribe(queue), render)
