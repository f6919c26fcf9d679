"""Server-Sent Events shared by the live streams (/alerts/stream, /wall/stream): framing, heartbeats,
and ending a stream whose API key was revoked while it was open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import orjson
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.auth import _token, security_of

HEARTBEAT_S = 15.0  # a comment line this often keeps proxies from closing a quiet stream
KEY_RECHECK_S = 60.0  # a revoked key ends an open stream within this
HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}

Item = TypeVar("Item")


def sse_frame(event: str, data: Mapping[str, Any], ident: str | None = None) -> bytes:
    head = f"id: {ident}\n" if ident else ""
    return f"{head}event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


def sse_response(request: Request, queue: asyncio.Queue[Item], release: Callable[[], None],
                 render: Callable[[Item], tuple[bytes | None, bool]]) -> StreamingResponse:
    """Streams what `render` makes of each queued item: (frame or None to skip it, whether it is the last).
    `release` runs when the client goes away or the stream ends."""
    token = _token(request) or ""
    keys = security_of(request).keys

    async def events() -> AsyncIterator[bytes]:
        checked = time.monotonic()
        try:
            yield b"retry: 3000\n: connected\n\n"
            while True:
                try:
                    frame, last = render(await asyncio.wait_for(queue.get(), HEARTBEAT_S))
                except TimeoutError:
                    frame, last = b": heartbeat\n\n", False
                if time.monotonic() - checked > KEY_RECHECK_S:
                    checked = time.monotonic()
                    if await run_in_threadpool(keys.authenticate, token) is None:
                        yield sse_frame("auth", {"detail": "key revoked"})
                        return
                if frame is not None:
                    yield frame
                if last:
                    return
        finally:
            release()

    return StreamingResponse(events(), media_type="text/event-stream", headers=HEADERS)
