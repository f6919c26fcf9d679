"""POST /ingest: agencies push readings over HTTP, through the same validation as the worker."""

from __future__ import annotations

import time
import uuid
import zlib
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from api.auth import require
from api.state import api_state
from controlroom import metrics
from controlroom.schema import AGENCY_HEADER, DLQ_TOPIC, WRONG_AGENCY, Reading, Rejection, dead_letter, validate
from controlroom.security import Principal, ingest_denial

router = APIRouter(tags=["ingest"])


class ReadingResult(BaseModel):
    index: int
    event_id: str | None
    status: Literal["accepted", "rejected"]
    reason: str | None = None
    field: str | None = None
    detail: str | None = None


class IngestResponse(BaseModel):
    accepted: int
    rejected: int
    results: list[ReadingResult]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, gunzipped if sent so, refusing (413) anything past `limit` bytes either way."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise HTTPException(400, f"body is not valid gzip: {exc}") from exc
        if len(body) > limit or inflater.unconsumed_tail:
            raise HTTPException(413, f"decompressed body larger than {limit} bytes")
    return body


def parse_documents(body: bytes, content_type: str) -> list[Any]:
    """A JSON array (or one object), or NDJSON when the content type says so. Bad lines stay as bytes."""
    if "ndjson" in content_type or "jsonl" in content_type:
        docs: list[Any] = []
        for line in body.splitlines():
            if line.strip():
                try:
                    docs.append(orjson.loads(line))
                except orjson.JSONDecodeError:
                    docs.append(line)  # rejected per reading as malformed, not the whole request
        return docs
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"body is not valid JSON: {exc.msg}") from exc
    if isinstance(doc, dict):
        return [doc]
    if not isinstance(doc, list):
        raise HTTPException(400, "body must be a JSON array of readings, one reading object, or NDJSON")
    return doc


@router.post("/ingest", response_model=IngestResponse,
             summary="Push readings (JSON array or NDJSON, gzip accepted); agency keys only")
async def ingest(request: Request, principal: Annotated[Principal, Depends(require("agency"))]) -> IngestResponse:
    api = api_state(request)
    settings, catalog = api.settings, api.catalog
    sec = api.security
    body = await read_body(request, settings.ingest_max_bytes)
    docs = parse_documents(body, request.headers.get("content-type", ""))
    if len(docs) > settings.ingest_max_readings:
        raise HTTPException(413, f"{len(docs)} readings in one request; the limit is {settings.ingest_max_readings}")
    now_ms = int(time.time() * 1000)
    request_id = uuid.uuid4().hex[:12]
    producer = await api.producer()
    results: list[ReadingResult] = []
    sends = []
    for i, doc in enumerate(docs):
        verdict: Reading | Rejection
        if isinstance(doc, bytes):
            verdict = Rejection("malformed", "", "line is not valid JSON")
        else:
            # the key's agency is the reading's sender: the same registry check the worker makes on the header
            verdict = validate(doc, catalog, ref_ms=now_ms, max_future_ms=int(settings.max_future_s * 1000),
                               max_past_ms=int(settings.max_past_s * 1000), agency=principal.agency)
        denial = None
        if isinstance(verdict, Reading):
            denial = ingest_denial(principal, sec.agencies, verdict.feed, verdict.province)
        elif verdict.reason == WRONG_AGENCY:  # for a key, a feed or province it may not write
            denial = verdict.detail
        if denial:
            verdict = Rejection("not_allowed", "province" if "province" in denial else "feed", denial)
        event_id = doc.get("event_id") if isinstance(doc, dict) and isinstance(doc.get("event_id"), str) else None
        raw = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        if isinstance(verdict, Reading):
            topic = catalog.feeds[verdict.feed].topic
            # the same timestamp we validated against: downstream consumers reach the same verdict
            sends.append(await producer.send(topic, raw, key=verdict.province.encode(), timestamp_ms=now_ms,
                                             headers=[(AGENCY_HEADER, principal.agency.encode())]))
            results.append(ReadingResult(index=i, event_id=event_id, status="accepted"))
        else:
            dlq = dead_letter(verdict, raw, source_topic="ingest", partition=0, offset=i, received_ms=now_ms,
                              dlq_id=f"ingest:{request_id}:{i}", agency=principal.agency)
            sends.append(await producer.send(DLQ_TOPIC, orjson.dumps(dlq), key=principal.agency.encode(),
                                             timestamp_ms=now_ms))
            results.append(ReadingResult(index=i, event_id=event_id, status="rejected", reason=verdict.reason,
                                         field=verdict.field, detail=verdict.detail))
    for fut in sends:
        await fut  # "accepted" means the broker has it
    accepted = sum(r.status == "accepted" for r in results)
    metrics.add(metrics.INGEST_READINGS, {"accepted": accepted, "rejected": len(results) - accepted})
    feeds = sorted({str(d["feed"]) for d in docs if isinstance(d, dict) and isinstance(d.get("feed"), str)})
    await run_in_threadpool(sec.audit.record, actor=principal, action="ingest", target=principal.agency,
                            after={"request_id": request_id, "accepted": accepted,
                                   "rejected": len(results) - accepted, "feeds": feeds[:50]},
                            remote=request.client.host if request.client else "")
    return IngestResponse(accepted=accepted, rejected=len(results) - accepted, results=results)
