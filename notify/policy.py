"""Retry policy and delivery records. Pure code.

An attempt ends in one of three ways: 2xx → delivered; a permanent refusal (3xx, 4xx other than 408 and
429, an SMTP 5xx) → dead letter at once; anything else (5xx, 408, 429, timeout, connection refused, SMTP 4xx)
→ retry after an exponential backoff, and after the last allowed attempt → dead letter. Every attempt is one
record on topic alerts.deliveries (controlroom.schema.delivery_message).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

DELIVERED = "delivered"
RETRY = "retry"
DEAD_LETTER = "dead_letter"
SKIPPED = "skipped"  # a `repeat` inside the subscription's repeat_interval_s: not sent, on purpose
FINAL_STATUSES = frozenset({DELIVERED, DEAD_LETTER, SKIPPED})
RETRYABLE_4XX = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: ok, or an error that is permanent or worth retrying."""

    ok: bool
    status_code: int = 0  # HTTP status; 0 when there was none (timeout, refused, e-mail: code in `error`)
    error: str = ""
    permanent: bool = False


def http_outcome(status_code: int, reason: str = "") -> Outcome:
    if 200 <= status_code < 300:
        return Outcome(True, status_code)
    # a redirect is a misconfigured target (not followed: it would re-send the signed body elsewhere)
    permanent = 300 <= status_code < 500 and status_code not in RETRYABLE_4XX
    return Outcome(False, status_code, f"HTTP {status_code} {reason}".strip(), permanent)


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """The wait after failed attempt number `attempt` (1-based): base, 2·base, 4·base … capped."""
    return min(cap_s, base_s * 2 ** max(0, attempt - 1))


def schedule(max_attempts: int, base_s: float, cap_s: float) -> list[float]:
    """The waits between attempts of one delivery (max_attempts - 1 of them)."""
    return [backoff_s(a, base_s, cap_s) for a in range(1, max(1, max_attempts))]


def status_after(outcome: Outcome, attempt: int, max_attempts: int) -> str:
    if outcome.ok:
        return DELIVERED
    return DEAD_LETTER if outcome.permanent or attempt >= max_attempts else RETRY


def redact_target(target: str) -> str:
    """A target as recorded and logged: an e-mail address as is; a URL without user:password and query
    (where tokens tend to live). The secret used for signing is never part of it."""
    if "://" not in target:
        return target
    parts = urlsplit(target)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "…" if parts.query else "", ""))
