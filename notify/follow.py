"""Read a whole topic from its beginning, then follow it (no consumer group, every partition)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from controlroom.errors import StartupError
from controlroom.kafka import FETCH_MAX_WAIT_MS, StartEnd, make_consumer, polls
from controlroom.logs import get_logger
from controlroom.settings import Settings

log = get_logger("notifier")

CATCH_UP_TIMEOUT_S = 60.0


class TopicFollower:
    """Reads a whole topic from the beginning, then follows it; `caught_up` once the start-time end is read."""

    def __init__(self, settings: Settings, topic: str, apply: Callable[[bytes | None], None]) -> None:
        self.topic = topic
        self.apply = apply
        self.caught_up = asyncio.Event()
        self._consumer = make_consumer(settings, topic, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)

    async def run(self, stop: asyncio.Event) -> None:
        c = self._consumer
        await c.start()
        try:
            deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
            while not c.assignment():
                if time.monotonic() > deadline:
                    raise StartupError(f"topic {self.topic} has no partitions")
                await asyncio.sleep(0.05)
            parts = sorted(c.assignment())
            await c.seek_to_beginning(*parts)
            end = StartEnd(c, await c.end_offsets(parts))
            async for polled in polls(c, stop, log, timeout_ms=200, topic=self.topic):
                for records in polled.values():
                    for r in records:
                        self.apply(r.value)
                if not self.caught_up.is_set() and await end.reached():
                    self.caught_up.set()
        finally:
            await c.stop()
