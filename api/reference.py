"""GET /feeds and /provinces: the catalog the other endpoints take their ids from (the registry: api/agencies.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from api.auth import require
from api.models import FeedsOut, ProvinceOut
from api.state import State

router = APIRouter(dependencies=[Depends(require("viewer"))])


@router.get("/feeds", response_model=FeedsOut)
async def feeds(state: State) -> Any:
    cat = state.catalog
    counts: dict[str, int] = {}
    for f, _p, _d in cat.iter_series():
        counts[f.id] = counts.get(f.id, 0) + 1
    return {
        "categories": [{"id": c.id, "name_vi": c.name_vi, "name_en": c.name_en} for c in cat.categories.values()],
        "feeds": [{
            "id": f.id, "category": f.category, "category_name_vi": cat.categories[f.category].name_vi,
            "category_name_en": cat.categories[f.category].name_en, "name_vi": f.name_vi, "name_en": f.name_en,
            "source": f.source, "unit": f.unit, "kind": f.kind, "scope": f.scope,
            "dims": {k: list(v) for k, v in f.dims.items()}, "cadence_s": f.cadence_s,
            "valid_min": f.valid_min, "valid_max": f.valid_max, "topic": f.topic, "series": counts.get(f.id, 0),
        } for f in cat.feeds.values()],
    }


@router.get("/provinces", response_model=list[ProvinceOut])
async def provinces(state: State) -> Any:
    return [{"code": p.code, "name_vi": p.name_vi, "name_en": p.name_en, "kind": p.kind, "lat": p.lat,
             "lon": p.lon, "legacy_codes": list(p.legacy_codes)} for p in state.catalog.provinces.values()]
