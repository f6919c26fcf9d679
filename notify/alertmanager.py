"""Alert state → an external Alertmanager (`ALERTMANAGER_URL`), as Prometheus sends it: `POST /api/v2/alerts`.

Runs in the notifier process, beside the notifications and independent of them: its own reader follows topic
`alerts` from the beginning (every partition, no consumer group), so it knows the state of every alert after a
restart, and an Alertmanager that is down never holds the notifier's offsets back.

What is sent (what Prometheus' rule manager does, `--rules.alert.resend-delay`):
- an alert whose state is `firing` (its events firing, repeat, acknowledged, escalated): labels (alertname = the
  rule id, severity, feed, province, rule_type, category, agency, alert_id, the dims), annotations (summary,
  summary_vi, summary_en, event, seq, rule_version, value), `startsAt` (the episode's start), `generatorURL`
  (the alert's link) and `endsAt` = now + 4 × ALERTMANAGER_RESEND_S; every firing alert is sent again every
  ALERTMANAGER_RESEND_S, so Alertmanager does not resolve it on its own while it fires;
- a resolve: the same labels with `endsAt` = when it ended, sent again at every resend for 15 minutes
  (Prometheus' resolved retention) so an Alertmanager restarted meanwhile learns it too;
- `pending` is not sent (Prometheus does not send pending alerts), nor the resolve of an episode that never
  fired;
- a firing alert whose labels change (its severity rose) is a new label set for Alertmanager: the old one is
  resolved at that instant, the new one fires (what Prometheus does when an alert's labels change);
- silenced events are sent like any other: Prometheus knows nothing of silences, Alertmanager applies its own
  silences and inhibitions (ours only hold back our own notifications).

Failures: a request refused for good (4xx other than 408/429: Alertmanager said what it could not accept) is
logged and counted, and its alerts wait for the next resend; anything else (refused connection, timeout, 5xx)
is retried after NOTIFY_BACKOFF_S · 2^(n-1), capped at NOTIFY_BACKOFF_MAX_S, with the latest state of every
alert changed meanwhile. Nothing here stops the notifier. Several notifiers each send everything (an
Alertmanager deduplicates identical label sets, as it does for a Prometheus HA pair).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from controlroom.catalog import Catalog
from controlroom.logs import get_logger
from controlroom.schema import ALERTS_TOPIC, AlertEvent, MessageError, read_alert_event
from controlroom.settings import Settings
from notify.follow import TopicFollower
from notify.formats import am_annotations, am_fingerprint, am_labels, go_time
from notify.policy import Outcome, backoff_s, http_outcome

log = get_logger("alertmanager")

API_PATH = "/api/v2/alerts"
MAX_BATCH = 64  # alerts per request (Prometheus' notifier sends at most 64)
RESOLVED_KEEP_MS = 15 * 60_000  # a resolve is sent again this long (Prometheus' resolvedRetention)
VALID_FOR = 4  # a firing alert's endsAt = now + VALID_FOR × resend interval (Prometheus: 4 × resend delay)
RESTART_AFTER_S = 5.0  # the reader of `alerts` failed (broker gone at start…): tried again after this


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


@dataclass
class _Sent:
    """One label set as Alertmanager knows it."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_ms: int
    url: str
    ends_ms: int | None = None  # None while firing


@dataclass
class PusherStats:
    requests: int = 0  # POSTs answered 2xx
    alerts_sent: int = 0  # alerts in those POSTs
    failures: int = 0  # POSTs that failed (each is retried or, refused, waits for the next resend)
    retries: int = 0
    refused: int = 0  # POSTs Alertmanager refused for good (4xx)
    malformed: int = 0  # unreadable alert events, skipped
    last_error: str = ""


@dataclass
class AlertmanagerBook:
    """What Alertmanager should know: one entry per label set, from the alert events (pure, no I/O)."""

    catalog: Catalog
    resend_ms: int
    sent: dict[str, _Sent] = field(default_factory=dict)  # AM fingerprint → label set
    current: dict[str, str] = field(default_factory=dict)  # alert id → fingerprint of its latest label set
    seq: dict[str, int] = field(default_factory=dict)  # alert id → last seq applied
    dirty: set[str] = field(default_factory=set)  # fingerprints to send at the next push

    def offer(self, event: AlertEvent) -> bool:
        """Apply an alert event; True when Alertmanager has something new to hear."""
        aid, seq = str(event["alert_id"]), int(event["seq"])
        if seq <= self.seq.get(aid, 0):
            return False  # read again (a replayed event) or older than what is known
        self.seq[aid] = seq
        state = str(event.get("state") or event["event"])
        fp = self.current.get(aid)
        known = self.sent.get(fp) if fp is not None else None
        firing_known = known is not None and known.ends_ms is None
        if state == "resolved":
            if known is None or not firing_known:
                return False  # it never fired (pending, then gone): Prometheus says nothing
            known.ends_ms = int(event.get("ends_at") or event["event_at"])
            known.annotations = am_annotations(event)
            self.dirty.add(str(fp))
            return True
        if state != "firing":
            return False  # pending (and its acknowledgement): not for Alertmanager
        labels = am_labels(event, self.catalog)
        new_fp = am_fingerprint(labels)
        if known is not None and firing_known and fp != new_fp:  # its labels changed: the old set ends now
            known.ends_ms = int(event["event_at"])
            self.dirty.add(str(fp))
        self.sent[new_fp] = _Sent(labels, am_annotations(event), int(event["starts_at"]), str(event.get("link") or ""))
        self.current[aid] = new_fp
        self.dirty.add(new_fp)
        return True

    def postable(self, fp: str, now_ms: int) -> dict[str, Any]:
        s = self.sent[fp]
        ends = s.ends_ms if s.ends_ms is not None else now_ms + VALID_FOR * self.resend_ms
        doc: dict[str, Any] = {"labels": s.labels, "annotations": s.annotations, "startsAt": go_time(s.starts_ms),
                               "endsAt": go_time(ends)}
        if s.url:
            doc["generatorURL"] = s.url
        return doc

    def take(self, now_ms: int, *, everything: bool) -> list[str]:
        """The fingerprints to send now: what changed, or (a resend) every firing alert and every resolve
        younger than RESOLVED_KEEP_MS. Older resolves are forgotten."""
        for fp in [fp for fp, s in self.sent.items() if s.ends_ms is not None and now_ms - s.ends_ms > RESOLVED_KEEP_MS
                   and fp not in self.dirty]:
            del self.sent[fp]
        if everything:
            self.dirty.clear()
            return list(self.sent)
        out = [fp for fp in self.dirty if fp in self.sent]
        self.dirty.clear()
        return out

    def requeue(self, fps: list[str]) -> None:
        self.dirty.update(fp for fp in fps if fp in self.sent)

    def firing(self) -> int:
        return sum(1 for s in self.sent.values() if s.ends_ms is None)


class AlertmanagerPusher:
    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.url = settings.alertmanager_url.rstrip("/") + API_PATH
        self.book = AlertmanagerBook(catalog, round(settings.alertmanager_resend_s * 1000))
        self.stats = PusherStats()
        self.caught_up = asyncio.Event()  # the state of every alert is read: pushing has begun
        self._wake = asyncio.Event()
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(settings.notify_timeout_s), follow_redirects=False,
                                         headers={"User-Agent": "controlroom-notifier/1"})

    def apply(self, raw: bytes | None) -> None:
        try:
            event = read_alert_event(raw)
            changed = self.book.offer(event)
        except (MessageError, ValueError, KeyError, TypeError) as exc:
            self.stats.malformed += 1
            log.warning("unreadable alert event skipped", error=str(exc)[:200])
            return
        if changed:
            self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow `alerts` and push until `stop`; never raises (failures are logged, counted, retried)."""
        log.info("alertmanager pusher started", url=self.url, resend_s=self.settings.alertmanager_resend_s)
        pushing = asyncio.create_task(self._push_loop(stop), name="alertmanager-push")
        try:
            while not stop.is_set():
                follower = TopicFollower(self.settings, ALERTS_TOPIC, self.apply)
                follower.caught_up = self.caught_up  # a later reader (after a failure) catches up silently
                try:
                    await follower.run(stop)
                except Exception as exc:  # noqa: BLE001 (the pusher must never stop the notifier)
                    self.stats.last_error = f"reader: {exc!r}"[:300]
                    log.error("alertmanager pusher: reading alerts failed; trying again", error=repr(exc)[:300],
                              retry_in_s=RESTART_AFTER_S)
                    await _pause(stop, RESTART_AFTER_S)
        finally:
            self._wake.set()
            await asyncio.gather(pushing, return_exceptions=True)
            await self._client.aclose()
            log.info("alertmanager pusher stopped", firing=self.book.firing(), requests=self.stats.requests,
                     alerts_sent=self.stats.alerts_sent, failures=self.stats.failures, retries=self.stats.retries,
                     refused=self.stats.refused)

    async def _push_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._pushing(stop)
            except Exception as exc:  # noqa: BLE001 (a bug here must not stop the notifications)
                self.stats.last_error = f"pusher: {exc!r}"[:300]
                log.exception("alertmanager pusher failed; starting again", retry_in_s=RESTART_AFTER_S)
                await _pause(stop, RESTART_AFTER_S)

    async def _pushing(self, stop: asyncio.Event) -> None:
        resend_s = self.settings.alertmanager_resend_s
        attempt = 0
        next_resend = 0.0  # the first push after catching up sends everything
        retry_at = 0.0
        while not stop.is_set():
            if not self.caught_up.is_set():
                await self._sleep(stop, 0.2)
                continue
            self._wake.clear()  # before taking: a state read while this push runs wakes the next one
            mono = time.monotonic()
            if mono >= retry_at:
                everything = mono >= next_resend
                fps = self.book.take(int(time.time() * 1000), everything=everything)
                if not fps or await self._push(fps):
                    attempt = 0
                    if everything:
                        next_resend = mono + resend_s
                else:
                    attempt += 1
                    self.stats.retries += 1
                    retry_at = time.monotonic() + backoff_s(attempt, self.settings.notify_backoff_s,
                                                            self.settings.notify_backoff_max_s)
            deadline = retry_at if attempt else next_resend
            await self._sleep(stop, max(0.05, deadline - time.monotonic()))

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        """Until the timeout, a new alert state (after catching up), or the stop."""
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _push(self, fps: list[str]) -> bool:
        """POST the label sets in batches of MAX_BATCH. False: a batch must be retried (it and the rest are
        queued again); a batch refused for good is dropped (logged, counted) and the next one goes on."""
        now_ms = int(time.time() * 1000)
        for i in range(0, len(fps), MAX_BATCH):
            batch = fps[i:i + MAX_BATCH]
            body = orjson.dumps([self.book.postable(fp, now_ms) for fp in batch])
            try:
                resp = await self._client.post(self.url, content=body, headers={"Content-Type": "application/json"})
                outcome = http_outcome(resp.status_code, resp.reason_phrase)
                detail = resp.text[:300] if not outcome.ok else ""
            except httpx.HTTPError as exc:
                outcome, detail = Outcome(False, 0, type(exc).__name__), str(exc)[:300]
            if outcome.ok:
                self.stats.requests += 1
                self.stats.alerts_sent += len(batch)
                continue
            self.stats.failures += 1
            self.stats.last_error = f"{outcome.error} {detail}".strip()
            if outcome.permanent:
                self.stats.refused += 1
                log.error("alertmanager refused alerts (sent again at the next resend)", url=self.url,
                          alerts=len(batch), error=self.stats.last_error)
                continue
            log.warning("alertmanager push failed; will retry", url=self.url, alerts=len(fps) - i,
                        error=self.stats.last_error)
            self.book.requeue(fps[i:])
            return False
        return True
