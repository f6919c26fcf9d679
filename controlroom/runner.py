"""Run one asyncio service until SIGINT/SIGTERM: the signal sets `stop`, the service finishes what it
has in hand and returns (the sink its batch, the alerter its snapshot, the notifier its deliveries)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


def run_until_signalled(service: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await service(stop)

    asyncio.run(main())
