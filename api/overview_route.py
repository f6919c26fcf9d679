"""GET /overview: the shared snapshot of api/overview_cache.py, served as is with its Age."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.auth import require
from api.models import Overview
from api.overview_cache import overview_cache

router = APIRouter()


@router.get("/overview", response_model=Overview, dependencies=[Depends(require("viewer"))])
async def overview(request: Request) -> Any:
    snap = await (await overview_cache(request)).get()
    return Response(snap.body, media_type="application/json", headers={"Age": str(int(snap.age_s()))})
