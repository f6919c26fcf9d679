"""Live window updates: which open windows to publish on agg.live now. Pure code.

The alerter judges thresholds on open windows so an alarm level crossed is known within a second,
not when the minute closes. Each touched window is offered after every batch; a window goes out at
once when it has not been sent for `interval_ms`, or when it reached a new maximum or minimum since
it was last sent (a level crossed on max/min is always a new extreme, so alarms never wait here);
otherwise it waits (latest aggregate wins), so a busy series costs about one message per interval.
"""

from __future__ import annotations

from streams.windows import ClosedWindow


class LiveThrottle:
    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.sent_at: dict[bytes, int] = {}
        self.sent_range: dict[bytes, tuple[float, float]] = {}  # (min, max) as last sent
        self.waiting: dict[bytes, tuple[int, ClosedWindow]] = {}

    def offer(self, key: bytes, partition: int, window: ClosedWindow) -> None:
        self.waiting[key] = (partition, window)

    def take(self, now_ms: int) -> list[tuple[int, ClosedWindow]]:
        """The waiting windows due now, marked as sent."""
        due: list[tuple[int, ClosedWindow]] = []
        for key in [k for k in self.waiting if self._due(k, now_ms)]:
            partition, w = self.waiting.pop(key)
            due.append((partition, w))
            self.sent_at[key] = now_ms
            self.sent_range[key] = (w.agg.vmin, w.agg.vmax)
        return due

    def _due(self, key: bytes, now_ms: int) -> bool:
        if now_ms - self.sent_at.get(key, -(1 << 62)) >= self.interval_ms:
            return True
        lo, hi = self.sent_range.get(key, (float("inf"), float("-inf")))
        agg = self.waiting[key][1].agg
        return agg.vmax > hi or agg.vmin < lo

    def forget(self, key: bytes) -> None:
        """The window closed: its final aggregate goes out on agg.1m instead."""
        self.sent_at.pop(key, None)
        self.sent_range.pop(key, None)
        self.waiting.pop(key, None)
