"""Who is calling: API key → principal, role check, per-key rate limit; plus hardening middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse, Response

from api.keystore import AuditLog, KeyStore
from api.state import api_state
from controlroom.security import Agency, Principal, Role, TokenBucket


@dataclass
class Security:
    keys: KeyStore
    audit: AuditLog
    agencies: dict[str, Agency]
    limiter: TokenBucket


def security_of(request: Request) -> Security:
    return api_state(request).security


def _token(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return request.headers.get("x-api-key") or None


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """FastAPI dependency: 401 without a valid key, 429 past the key's rate, 403 with the wrong role."""

    async def dependency(request: Request) -> Principal:
        sec = security_of(request)
        token = _token(request)
        if token is None:
            raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                                headers={"WWW-Authenticate": "Bearer"})
        principal = await run_in_threadpool(sec.keys.authenticate, token)
        if principal is None:
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        wait = sec.limiter.take(principal.key_id)
        if wait > 0:
            raise HTTPException(429, f"rate limit for this key exceeded; retry in {wait:.1f} s",
                                headers={"Retry-After": str(max(1, round(wait + 0.5)))})
        if not principal.has_role(role):
            raise HTTPException(403, f"this endpoint needs the {role} role; this key has the {principal.role} role")
        request.state.principal = principal
        return principal

    return dependency


class HardeningMiddleware(BaseHTTPMiddleware):
    """Security headers on every answer, and a request body cap checked before the body is read."""

    def __init__(self, app, max_body_bytes: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app)
        self.max_body_bytes = max_body_bytes

    async def dispatch(self, request: Request, call_next) -> Response:  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            response: Response = JSONResponse(
                {"detail": f"request body larger than {self.max_body_bytes} bytes"}, status_code=413)
        else:
            response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        # pages that need more (/wall, /docs, /redoc) set their own policy, which this leaves as it is
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        return response
