"""Incident endpoints (issue 13), and alerts' assignee and comments.

Reads come from ClickHouse (incidents_current, incident_events, alert_notes). Changes are commands on topic
alerts.control, applied by the alerter, which owns incidents (controlroom/alerts/incidents.py) and publishes
the result on topic `incidents` (or `alerts.notes`); the answer (202) comes once the command is published.
Operators act; every action is audited like an alert acknowledgement.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from api import incidents_sql
from api.alerts import ALERT_ID, _audit, _command, current_alert
from api.auth import require
from api.state import api_state
from controlroom.catalog import NATIONAL
from controlroom.security import Principal

router = APIRouter(tags=["incidents"])

INCIDENT_ID = Path(pattern="^[0-9a-f]{16}$", description="16 hex digits (from /incidents)")


def _incident_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("ack_by", "ack_comment", "members")}
    out["ack"] = {"by": row["ack_by"], "comment": row["ack_comment"]} if row["ack_by"] else None
    out["members"] = orjson.loads(row["members"] or "[]")
    return out


@router.get("/incidents", summary="Incidents: open and acknowledged by default, worst and newest first")
async def list_incidents(
    request: Request, _: Annotated[Principal, Depends(require("viewer"))],
    state: Annotated[Literal["active", "open", "acknowledged", "resolved", "all"], Query()] = "active",
    province: Annotated[str | None, Query(max_length=8)] = None,
    type: Annotated[str | None, Query(max_length=80)] = None,  # noqa: A002 - the API's own word
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    api = api_state(request)
    if province is not None and province not in api.catalog.provinces and province != NATIONAL:
        raise HTTPException(422, [{"loc": ["query", "province"], "msg": f"unknown province code {province!r}",
                                   "type": "value_error"}])
    states = {"active": ("open", "acknowledged"), "all": incidents_sql.STATES}.get(state, (state,))
    rows = await api.query(incidents_sql.incidents_sql(await api.database_for(request), states=states,
                                                       province=province, type_id=type, limit=limit))
    return [_incident_out(r) for r in rows]


async def current_incident(request: Request, incident_id: str) -> dict[str, Any]:
    api = api_state(request)
    rows = await api.query(incidents_sql.incident_sql(await api.database_for(request), incident_id))
    if not rows:
        raise HTTPException(404, f"no incident {incident_id}")
    return _incident_out(rows[0])


@router.get("/incidents/{incident_id}", summary="One incident: its state, member alerts, timeline and comments")
async def get_incident(request: Request, _: Annotated[Principal, Depends(require("viewer"))],
                       incident_id: Annotated[str, INCIDENT_ID]) -> dict[str, Any]:
    api = api_state(request)
    db = api.settings.clickhouse_database
    out = await current_incident(request, incident_id)
    timeline = await api.query(incidents_sql.timeline_sql(db, incident_id))
    scoped = await api.database_for(request)  # member alerts of other provinces: listed, not shown
    alerts = {r["alert_id"]: r for r in await api.query(incidents_sql.member_alerts_sql(scoped, out["alert_ids"]))}
    out["alerts"] = [{**m, "alert": alerts.get(m["alert_id"])} for m in out["members"]]
    out["timeline"] = timeline
    out["comments"] = [{"by": e["by"], "at": e["at"], "comment": e["comment"]} for e in timeline
                       if e["event"] == "commented"]
    return out


class CommentRequest(BaseModel):
    comment: str = Field(min_length=1, max_length=2000)


class AssignRequest(BaseModel):
    assignee: str = Field(min_length=1, max_length=200, description="who takes it (a name or a team)")
    comment: str = Field("", max_length=2000)


class AckRequest(BaseModel):
    comment: str = Field("", max_length=2000)


@router.post("/incidents/{incident_id}/ack", status_code=202,
             summary="Acknowledge an open incident and its firing alerts (applied by the alerter)")
async def ack_incident(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                       incident_id: Annotated[str, INCIDENT_ID], body: AckRequest) -> dict[str, Any]:
    """Whoever takes the incident takes its alerts: each member alert still firing is acknowledged too (its
    repeats and escalation stop, as with POST /alerts/{id}/ack), with a comment naming the incident; each one
    audited. An alert that joins afterwards is not: it is news."""
    current = await current_incident(request, incident_id)
    if current["state"] != "open":
        raise HTTPException(409, f"incident {incident_id} is {current['state']}: nothing to acknowledge")
    await _command(request, "incident.ack", who, incident_id=incident_id, comment=body.comment)
    await _audit(request, who, "incident.ack", incident_id, after={"comment": body.comment})
    comment = f"incident {incident_id}" + (f": {body.comment}" if body.comment else "")
    alerts = sorted(m["alert_id"] for m in current["members"] if m.get("state") == "firing")
    for alert_id in alerts:
        await _command(request, "ack", who, alert_id=alert_id, comment=comment)
        await _audit(request, who, "alert.ack", alert_id, after={"comment": comment, "incident": incident_id})
    return {"incident_id": incident_id, "accepted": True, "by": who.name, "comment": body.comment,
            "alerts_acknowledged": alerts}


@router.post("/incidents/{incident_id}/assign", status_code=202, summary="Assign an incident to someone")
async def assign_incident(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                          incident_id: Annotated[str, INCIDENT_ID], body: AssignRequest) -> dict[str, Any]:
    current = await current_incident(request, incident_id)
    await _command(request, "incident.assign", who, incident_id=incident_id, assignee=body.assignee,
                   comment=body.comment)
    await _audit(request, who, "incident.assign", incident_id, before={"assignee": current["assignee"]},
                 after={"assignee": body.assignee, "comment": body.comment})
    return {"incident_id": incident_id, "accepted": True, "by": who.name, "assignee": body.assignee}


@router.post("/incidents/{incident_id}/comments", status_code=202, summary="Add a comment to an incident")
async def comment_incident(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                           incident_id: Annotated[str, INCIDENT_ID], body: CommentRequest) -> dict[str, Any]:
    await current_incident(request, incident_id)
    await _command(request, "incident.comment", who, incident_id=incident_id, comment=body.comment)
    await _audit(request, who, "incident.comment", incident_id, after={"comment": body.comment})
    return {"incident_id": incident_id, "accepted": True, "by": who.name, "comment": body.comment}


# --- alerts: assignee and comments (stored as alert notes) ------------------------------------------------

@router.post("/alerts/{alert_id}/assign", status_code=202, tags=["alerts"], summary="Assign an alert to someone")
async def assign_alert(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                       alert_id: Annotated[str, ALERT_ID], body: AssignRequest) -> dict[str, Any]:
    await current_alert(request, alert_id)
    await _command(request, "alert.assign", who, alert_id=alert_id, assignee=body.assignee, comment=body.comment)
    await _audit(request, who, "alert.assign", alert_id, after={"assignee": body.assignee, "comment": body.comment})
    return {"alert_id": alert_id, "accepted": True, "by": who.name, "assignee": body.assignee}


@router.post("/alerts/{alert_id}/comments", status_code=202, tags=["alerts"], summary="Add a comment to an alert")
async def comment_alert(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                        alert_id: Annotated[str, ALERT_ID], body: CommentRequest) -> dict[str, Any]:
    await current_alert(request, alert_id)
    await _command(request, "alert.comment", who, alert_id=alert_id, comment=body.comment)
    await _audit(request, who, "alert.comment", alert_id, after={"comment": body.comment})
    return {"alert_id": alert_id, "accepted": True, "by": who.name, "comment": body.comment}
