"""POST /query: read-only SQL for analysts (see api/readonly_sql.py for how ClickHouse enforces it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.auth import require
from api.readonly_sql import QueryForbidden, QueryRefused
from api.state import api_state
from controlroom.security import Principal

router = APIRouter(tags=["query"])


class QueryRequest(BaseModel):
    sql: str = Field(min_length=1, max_length=20_000, description="one SELECT over the project's database")
    format: Literal["json", "csv"] = "json"


class QueryOut(BaseModel):
    columns: list[str]
    rows: list[list[Any]]


@router.post("/query", response_model=QueryOut, summary="Read-only SQL with time and row limits",
             responses={200: {"content": {"text/csv": {}}}})
async def query(body: QueryRequest, request: Request,
                _: Annotated[Principal, Depends(require("viewer"))]) -> Any:
    state = api_state(request)
    database = await state.database_for(request)  # a province-scoped key: its provinces' views only (api/scope.py)
    try:
        result = await run_in_threadpool(state.analyst.run, body.sql, body.format, database)
    except QueryRefused as exc:
        raise HTTPException(403 if isinstance(exc, QueryForbidden) else 400, str(exc)) from exc
    if body.format == "csv":
        return Response(result.csv or b"", media_type="text/csv")
    return QueryOut(columns=result.columns, rows=result.rows)
