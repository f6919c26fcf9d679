"""Webhook signing. Pure code. No secret is stored: each subscription's secret is derived from one master key.

    secret    = hex(HMAC-SHA256(NOTIFY_SIGNING_KEY, subscription_id))
    signature = "sha256=" + hex(HMAC-SHA256(secret, exact body bytes))   → header X-Signature

A receiver gets its secret once from an admin (who can compute it with subscription_secret) and checks each
request with verify_signature, on the raw body bytes, before parsing them.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Signature"
PREFIX = "sha256="


def subscription_secret(master_key: str, subscription_id: str) -> str:
    return hmac.new(master_key.encode(), subscription_id.encode(), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """The X-Signature header value for these exact body bytes."""
    return PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    """Constant-time check of an X-Signature header against the raw body bytes."""
    if not header or not header.startswith(PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode())
