"""GET /metrics: this process's metrics in Prometheus text format (in embedded mode its sink's too), unauthenticated
like /healthz: counts and latencies only, no data and no secrets. Left out of the OpenAPI document: it is for
Prometheus, not for API clients."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from controlroom.metrics import exposition

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def metrics() -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
