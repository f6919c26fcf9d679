"""Admin endpoints: API keys (shown once, stored hashed, revocable at once) and the audit log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth import require, security_of
from api.state import api_state
from controlroom.catalog import NATIONAL
from controlroom.security import Principal

router = APIRouter(tags=["admin"])


class KeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    role: Literal["viewer", "operator", "admin", "agency"]
    agency: str = Field("", max_length=64)
    provinces: list[str] = Field(default_factory=list, max_length=40)


class KeyInfo(BaseModel):
    key_id: str
    name: str
    role: str
    agency: str
    provinces: list[str]
    created_at: int | None
    created_by: str
    revoked_at: int | None
    active: bool


class NewKeyOut(KeyInfo):
    key: str = Field(description="the secret key: shown this once, never again")


def _remote(request: Request) -> str:
    return request.client.host if request.client else ""


@router.post("/admin/keys", response_model=NewKeyOut, status_code=201, summary="Create an API key")
async def create_key(body: KeyRequest, request: Request,
                     admin: Annotated[Principal, Depends(require("admin"))]) -> NewKeyOut:
    sec = security_of(request)
    catalog = api_state(request).catalog
    if body.role == "agency" and body.agency not in sec.agencies:
        raise HTTPException(422, [{"loc": ["body", "agency"], "msg": f"unknown agency {body.agency!r}",
                                   "type": "value_error"}])
    if body.role != "agency" and body.agency:
        raise HTTPException(422, [{"loc": ["body", "agency"], "msg": "only agency keys have an agency",
                                   "type": "value_error"}])
    unknown = [p for p in body.provinces if p not in catalog.provinces and p != NATIONAL]
    if unknown:
        raise HTTPException(422, [{"loc": ["body", "provinces"], "msg": f"unknown province codes {unknown}",
                                   "type": "value_error"}])
    key, info = await run_in_threadpool(sec.keys.create, name=body.name, role=body.role, agency=body.agency,
                                        provinces=body.provinces, created_by=admin.name)
    await run_in_threadpool(sec.audit.record, actor=admin, action="key.create", target=key.key_id, after=info,
                            remote=_remote(request))
    return NewKeyOut(key=key.token, **info)


@router.get("/admin/keys", response_model=list[KeyInfo], summary="List API keys (never their secrets)")
async def list_keys(request: Request, _: Annotated[Principal, Depends(require("admin"))]) -> list[dict[str, Any]]:
    return await run_in_threadpool(security_of(request).keys.list)


@router.delete("/admin/keys/{key_id}", response_model=KeyInfo, summary="Revoke an API key, effective at once")
async def revoke_key(key_id: str, request: Request,
                     admin: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    sec = security_of(request)
    before = next((k for k in await run_in_threadpool(sec.keys.list) if k["key_id"] == key_id), None)
    info = await run_in_threadpool(sec.keys.revoke, key_id, admin.name)
    if info is None:
        raise HTTPException(404, f"no API key {key_id!r}")
    await run_in_threadpool(sec.audit.record, actor=admin, action="key.revoke", target=key_id, before=before,
                            after=info, remote=_remote(request))
    return info


class AuditEntry(BaseModel):
    at: int
    actor_key_id: str
    actor_name: str
    actor_role: str
    action: str
    target: str
    before: str
    after: str
    remote: str


@router.get("/audit", response_model=list[AuditEntry], summary="Who changed what, newest first (admins)")
async def audit(request: Request, _: Annotated[Principal, Depends(require("admin"))],
                limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                action: Annotated[str | None, Query(max_length=64)] = None) -> list[dict[str, Any]]:
    return await run_in_threadpool(security_of(request).audit.read, limit, action)


class BackfillRequest(BaseModel):
    from_: str = Field(alias="from", description="start: a date or ISO 8601 time (UTC when no zone)",
                       examples=["2026-11-01"], max_length=64)
    to: str = Field(description="end, exclusive (same forms)", examples=["2026-11-02"], max_length=64)


@router.post("/admin/backfill", summary="Recompute the 1-minute aggregates of a past range from the raw readings")
async def backfill_range(body: BackfillRequest, request: Request,
                         admin: Annotated[Principal, Depends(require("admin"))]) -> dict[str, Any]:
    from controlroom.errors import ConfigError
    from controlroom.schema import parse_instant
    from sinks.backfill import backfill, chunks

    state = api_state(request)
    try:
        lo, hi = parse_instant(body.from_, "from"), parse_instant(body.to, "to")
        chunks(lo, hi, state.settings.window_s)
    except ConfigError as exc:
        raise HTTPException(422, [{"loc": ["body", "from"], "msg": str(exc), "type": "value_error"}]) from exc
    result = await run_in_threadpool(backfill, state.warehouse, lo, hi, state.settings.window_s)
    await run_in_threadpool(security_of(request).audit.record, actor=admin, action="aggregates.backfill",
                            target=f"{body.from_}..{body.to}", after=result.as_dict(), remote=_remote(request))
    return result.as_dict()
