"""Live window updates: which open windows to publish on agg.live now. Pure code.

The alerter judges thresholds on open windows so an alarm level crossed is known within a second,
not when the minute closes. Each touched window is offered after every batch; a window goes out at
once when it has not been sent for `interval_ms`, otherwise it waits (latest aggregate wins), so a
busy series costs at most one message per interval however many readings it gets.
"""

from __future__ import annotations

from streams.windows import ClosedWindow


class LiveThrottle:
    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.sent_at: dict[bytes, int] = {}
        self.waiting: dict[bytes, tuple[int, ClosedWindow]] = {}

    def offer(self, key: bytes, partition: int, window: ClosedWindow) -> None:
        self.waiting[key] = (partition, window)

    def take(self, now_ms: int) -> list[tuple[int, ClosedWindow]]:
        """The waiting windows due now, marked as sent."""
        due: list[tuple[int, ClosedWindow]] = []
        for key in [k for k in self.waiting if now_ms - self.sent_at.get(k, -(1 << 62)) >= self.interval_ms]:
            due.append(self.waiting.pop(key))
            self.sent_at[key] = now_ms
        return due

    def forget(self, key: bytes) -> None:
        """The window closed: its final aggregate goes out on agg.1m instead."""
        self.sent_at.pop(key, None)
        self.waiting.pop(key, None)
