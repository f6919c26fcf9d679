"""Live window updates: which open windows to publish on agg.live now. Pure code.

The alerter judges thresholds on open windows so an alarm level crossed is known within a second,
not when the minute closes. Each touched window is offered after every batch; a window goes out at
once when it has not been sent for `interval_ms`, or when it reached a new maximum or minimum since
it was last sent (a level crossed on max/min is always a new extreme, so alarms never wait here);
otherwise it waits (latest aggregate wins), so a busy series costs about one message per interval.
"""

from __future__ import annotations

from collections import deque

from streams.windows import ClosedWindow


class LiveThrottle:
    """Each batch offers the windows it touched and takes the due ones, so both stay proportional to the
    windows touched, not to every open window (a scan of all of them per batch was 3 % of the worker)."""

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self.sent_at: dict[bytes, int] = {}
        self.sent_range: dict[bytes, tuple[float, float]] = {}  # (min, max) as last sent
        self.waiting: dict[bytes, tuple[int, ClosedWindow]] = {}
        self.ready: dict[bytes, None] = {}  # waiting and due whatever the time: never sent, or a new extreme
        self.sent_order: deque[tuple[int, bytes]] = deque()  # (sent at, key), oldest first
        self.interval_over: set[bytes] = set()  # not waiting when their interval ended: due when next offered

    def offer(self, key: bytes, partition: int, window: ClosedWindow) -> None:
        self.waiting[key] = (partition, window)
        if key in self.ready:
            return
        lo, hi = self.sent_range.get(key, (float("inf"), float("-inf")))
        # a window's max only grows and its min only falls, so a new extreme stays one until it is sent
        if key not in self.sent_at or key in self.interval_over or window.agg.vmax > hi or window.agg.vmin < lo:
            self.ready[key] = None

    def take(self, now_ms: int) -> list[tuple[int, ClosedWindow]]:
        """The waiting windows due now, marked as sent."""
        order, oldest_due = self.sent_order, now_ms - self.interval_ms
        while order and order[0][0] <= oldest_due:
            sent, key = order.popleft()
            if self.sent_at.get(key) != sent:
                continue  # sent again since, or forgotten
            if key in self.waiting:
                self.ready[key] = None
            else:
                self.interval_over.add(key)
        due: list[tuple[int, ClosedWindow]] = []
        for key in self.ready:
            partition, w = self.waiting.pop(key)
            due.append((partition, w))
            self.sent_at[key] = now_ms
            self.sent_range[key] = (w.agg.vmin, w.agg.vmax)
            order.append((now_ms, key))
            self.interval_over.discard(key)
        self.ready = {}
        return due

    def forget(self, key: bytes) -> None:
        """The window closed: its final aggregate goes out on agg.1m instead."""
        self.sent_at.pop(key, None)
        self.sent_range.pop(key, None)
        self.waiting.pop(key, None)
        self.ready.pop(key, None)
        self.interval_over.discard(key)
