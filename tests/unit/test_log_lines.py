"""Every log line reaches stderr in one write, message and newline together: `make up` merges its children's
stderr into one stream, and a line written in two parts could be split by another thread's line (a CI run found
an alerter event glued to uvicorn's access log line)."""

from __future__ import annotations

import io
import logging
import sys
import threading

import orjson
import structlog

from controlroom.logs import configure_logging


class Writes(io.StringIO):
    """A stderr that remembers each write call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            self.calls.append(s)
        return super().write(s)


def test_each_line_is_one_write_from_structlog_and_stdlib_threads() -> None:
    configure_logging("info", "json", process="api")
    stream, saved = Writes(), sys.stderr
    ours, theirs = structlog.get_logger("test.lines"), logging.getLogger("uvicorn.access")

    def log(i: int) -> None:
        for n in range(200):
            if i % 2:
                ours.info("alert event", alert_id=f"a{i}-{n}")
            else:
                theirs.info("GET /healthz %s", n)

    threads = [threading.Thread(target=log, args=(i,)) for i in range(4)]
    sys.stderr = stream
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.stderr = saved
    calls = [c for c in stream.calls if c]
    assert len(calls) == 800
    assert all(c.endswith("\n") and c.count("\n") == 1 for c in calls), [c for c in calls if c.count("\n") != 1][:3]
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert sum(1 for d in lines if d.get("alert_id")) == 400 and all(d["process"] == "api" for d in lines)
