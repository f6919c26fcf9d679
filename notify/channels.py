"""The two ways out: a signed HTTP POST (httpx) and an e-mail over SMTP (stdlib smtplib in a thread).

Each channel turns one notification (a group's alerts, notify.grouping) into one attempt and reports an
Outcome; retries, records and offsets are the service's business. Nothing here logs a body, a secret or a signature.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import time
from email.message import EmailMessage
from typing import Protocol

import httpx

from controlroom.alerts.signing import SIGNATURE_HEADER, sign, subscription_secret
from controlroom.catalog import Catalog
from controlroom.settings import Settings
from notify.formats import EVENT_HEADER, IDEMPOTENCY_HEADER, build_email, event_name, webhook_body
from notify.grouping import Notification
from notify.policy import Outcome, http_outcome

USER_AGENT = "controlroom-notifier/1"


class Channel(Protocol):
    async def send(self, n: Notification) -> Outcome: ...

    async def close(self) -> None: ...


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class WebhookChannel:
    """POST the body; headers X-Signature, Idempotency-Key, X-ControlRoom-Event. Redirects are not followed."""

    def __init__(self, settings: Settings, master_key: str, catalog: Catalog) -> None:
        self._master_key = master_key
        self._catalog = catalog
        self._external_url = settings.notify_external_url
        self._timeout_s = settings.notify_timeout_s
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.notify_timeout_s), follow_redirects=False,
            limits=httpx.Limits(max_connections=max(4, settings.notify_concurrency)),
            headers={"User-Agent": USER_AGENT})

    def headers(self, n: Notification, body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json",
                SIGNATURE_HEADER: sign(subscription_secret(self._master_key, n.sub.id), body),
                IDEMPOTENCY_HEADER: n.key,
                EVENT_HEADER: event_name(n.alerts[0]) if len(n.alerts) == 1 else n.status}

    async def send(self, n: Notification) -> Outcome:
        body = webhook_body(n, self._catalog, self._external_url)
        try:
            resp = await self._client.post(n.sub.target, content=body, headers=self.headers(n, body))
        except httpx.TimeoutException:
            return Outcome(False, 0, f"timeout after {self._timeout_s:g} s")
        except httpx.HTTPError as exc:  # refused, reset, DNS…: worth another try
            return Outcome(False, 0, _error_text(exc))
        return http_outcome(resp.status_code, resp.reason_phrase)

    async def close(self) -> None:
        await self._client.aclose()


class EmailChannel:
    """One SMTP session per message (STARTTLS and login when configured), in a worker thread."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self._settings = settings
        self._catalog = catalog

    async def send(self, n: Notification) -> Outcome:
        if not self._settings.smtp_host:
            return Outcome(False, 0, "SMTP_HOST is not set: e-mail is off", permanent=True)
        msg = build_email(n, self._catalog, sender=self._settings.smtp_from, now_ms=int(time.time() * 1000))
        return await asyncio.to_thread(self._send_blocking, msg)

    def _send_blocking(self, msg: EmailMessage) -> Outcome:
        s = self._settings
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.notify_timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_user:
                    smtp.login(s.smtp_user, s.smtp_password.get_secret_value())
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            return Outcome(False, 0, f"recipient refused (SMTP {', '.join(map(str, codes))})",
                           permanent=all(500 <= c < 600 for c in codes))
        except smtplib.SMTPResponseException as exc:  # 5xx: permanent (bad sender, auth…); 4xx: try again
            raw = exc.smtp_error
            reply = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            return Outcome(False, 0, f"SMTP {exc.smtp_code} {reply[:200]}".strip(),
                           permanent=500 <= exc.smtp_code < 600)
        except (OSError, smtplib.SMTPException) as exc:  # refused, timeout, TLS, dropped connection
            return Outcome(False, 0, _error_text(exc))
        return Outcome(True)

    async def close(self) -> None:
        return None
