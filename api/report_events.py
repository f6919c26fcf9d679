"""Tells the alerter who has submitted which report (topic reports.submitted), for its report deadline rules
(controlroom/alerts/deadlines.py). I/O only.

The warehouse is the record (report_submissions); the topic is the announcement. A submission is announced in
the background after it is stored, so a broker that is away never fails or slows a submission: the announcer
retries until the broker takes it. Whatever a crash between the two loses is announced again at the next start:
the API re-announces every report submitted within the ledger's horizon (compacted topic, one record per
report; the alerter keeps the first time it heard of each, so a repeat changes nothing).
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson

from api.reports_sql import submitted_reports_sql
from api.state import ApiState
from controlroom.alerts.deadlines import KEEP_MS
from controlroom.logs import get_logger
from controlroom.schema import (
    REPORTS_TOPIC,
    ReportSubmitted,
    now_ms,
    report_submitted_key,
    report_submitted_message,
)

log = get_logger("api.report_events")

RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
BATCH = 1000


class ReportAnnouncer:
    def __init__(self, state: ApiState) -> None:
        self.state = state
        self.queue: asyncio.Queue[ReportSubmitted] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.announced = 0

    def announce(self, doc: ReportSubmitted) -> None:
        self.queue.put_nowait(doc)
        if self.task is None:
            self.task = asyncio.create_task(self._run(), name="report-announcer")

    async def announce_stored(self) -> int:
        """Queue every report submitted within the horizon, from the warehouse (at start); how many."""
        rows = await self.state.query(submitted_reports_sql(self.state.warehouse.database, now_ms() - KEEP_MS))
        for r in rows:
            self.announce(report_submitted_message(str(r["form"]), str(r["period"]), str(r["unit"]),
                                                   int(r["revision"]), int(r["first_ms"]), str(r["agency"])))
        return len(rows)

    async def _run(self) -> None:
        wait = RETRY_FIRST_S
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < BATCH:
                batch.append(self.queue.get_nowait())
            while True:
                try:
                    await self._send(batch)
                    self.announced += len(batch)
                    wait = RETRY_FIRST_S
                    break
                except Exception as exc:  # noqa: BLE001  (any broker failure: keep the batch, retry; never die)
                    log.warning("report submissions not announced yet; retrying", reports=len(batch),
                                retry_s=wait, error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(wait)
                    wait = min(wait * 2, RETRY_MAX_S)

    async def _send(self, batch: list[ReportSubmitted]) -> None:
        producer = await self.state.producer(REPORTS_TOPIC)
        futures = [await producer.send(REPORTS_TOPIC, orjson.dumps(d), key=report_submitted_key(d)) for d in batch]
        await asyncio.gather(*futures)

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
