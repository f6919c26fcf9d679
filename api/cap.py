"""CAP 1.2 over HTTP (issue 13): one alert's current state as a CAP document, and the Atom feed of public
alerts whose entries link to those documents. The documents are built by the pure
`controlroom.alerts.cap`; this module only reads the warehouse and answers.

Both need a viewer key, like every other read. The feed's content is public (its rules say so, and its
messages carry scope Public), but it is served by the same keyed API: an aggregator or a partner portal
gets its own viewer key (revocable, rate-limited, audited), and a deployment that wants an anonymous feed
puts a cache with its own key in front, so the API itself never answers an unauthenticated read.

Incidents get their document the same way: `GET /incidents/{id}/cap` (controlroom.alerts.cap.incident_cap:
its province with `province_area`, its id in `<incidents>`, its member alerts as parameters, each with the
`cap_reference` of its own current CAP document); an alert's document names its incidents in `<incidents>`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from api import alerts_sql, incidents_sql
from api.alerts import ALERT_ID, alert_out, rules_in_force
from api.auth import require
from api.incidents import INCIDENT_ID, current_incident
from api.state import api_state
from controlroom.alerts.cap import (
    ATOM_MEDIA_TYPE,
    CAP_MEDIA_TYPE,
    CapMessage,
    FeedEntry,
    alert_cap,
    atom_feed,
    cap_xml,
    incident_cap,
)
from controlroom.alerts.rules import public_rule_ids
from controlroom.schema import now_ms
from controlroom.security import Principal

router = APIRouter(tags=["alerts"])

FEED_TITLE = "Control Room — public alerts (CAP 1.2)"


def cap_response(message: CapMessage) -> Response:
    return Response(cap_xml(message), media_type=CAP_MEDIA_TYPE)


@router.get("/alerts/{alert_id}/cap", response_class=Response, name="alert_cap_document",
            summary="The alert's current state as an OASIS CAP 1.2 document (vi-VN and en-US <info>)",
            responses={200: {"content": {CAP_MEDIA_TYPE: {}}, "description": "a CAP 1.2 <alert>"}})
async def alert_cap_document(request: Request, _: Annotated[Principal, Depends(require("viewer"))],
                             alert_id: Annotated[str, ALERT_ID]) -> Response:
    state = api_state(request)
    db = await state.database_for(request)  # a province-scoped key: its provinces' alerts only (api/scope.py)
    rows = await state.query(alerts_sql.alert_sql(db, alert_id))
    if not rows:
        raise HTTPException(404, f"no alert {alert_id}")
    history = [alert_out(r) for r in await state.query(alerts_sql.history_sql(db, alert_id))]
    alert = alert_out(rows[0])
    public = alert["rule_id"] in public_rule_ids(await rules_in_force(request))
    # CAP's <incidents>: the incidents this alert is part of, by the identifiers their own documents carry
    incidents = [r["incident_id"] for r in await state.query(incidents_sql.incidents_of_alert_sql(db, alert_id))]
    return cap_response(alert_cap(alert, history, catalog=state.catalog, sender=state.settings.cap_sender,
                                  public=public, incidents=incidents))


@router.get("/incidents/{incident_id}/cap", response_class=Response, name="incident_cap_document",
            tags=["incidents"],
            summary="The incident's current state as an OASIS CAP 1.2 document (vi-VN and en-US <info>)",
            responses={200: {"content": {CAP_MEDIA_TYPE: {}}, "description": "a CAP 1.2 <alert>"}})
async def incident_cap_document(request: Request, _: Annotated[Principal, Depends(require("viewer"))],
                                incident_id: Annotated[str, INCIDENT_ID]) -> Response:
    state = api_state(request)
    incident = await current_incident(request, incident_id)
    alerts = await state.query(incidents_sql.member_alerts_sql(await state.database_for(request),
                                                               incident["alert_ids"]))
    return cap_response(incident_cap(incident, alerts, catalog=state.catalog, sender=state.settings.cap_sender))


@router.get("/cap/feed", response_class=Response, name="cap_feed",
            summary="Atom feed of public alerts (rules with `public: true`): firing, and resolved within "
                    "CAP_FEED_RESOLVED_S; each entry links to its CAP document",
            responses={200: {"content": {ATOM_MEDIA_TYPE: {}}, "description": "an Atom feed"}})
async def cap_feed(request: Request, _: Annotated[Principal, Depends(require("viewer"))],
                   limit: Annotated[int, Query(ge=1, le=1000)] = 500) -> Response:
    state = api_state(request)
    settings = state.settings
    db = await state.database_for(request)
    now = now_ms()
    public = sorted(public_rule_ids(await rules_in_force(request)))
    rows: list[dict[str, Any]] = []
    if public:
        rows = await state.query(alerts_sql.public_alerts_sql(
            db, rule_ids=public, resolved_since_ms=now - int(settings.cap_feed_resolved_s * 1000), limit=limit))
    histories: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if rows:
        for r in await state.query(alerts_sql.histories_sql(db, [r["alert_id"] for r in rows])):
            histories[r["alert_id"]].append(alert_out(r))
    entries = []
    for row in rows:
        alert = alert_out(row)
        message = alert_cap(alert, histories[alert["alert_id"]], catalog=state.catalog,
                            sender=settings.cap_sender, public=True)
        entries.append(FeedEntry(message, str(request.url_for("alert_cap_document", alert_id=alert["alert_id"])),
                                 int(alert["event_at"])))
    body = atom_feed(entries, feed_id=str(request.url_for("cap_feed")), self_url=str(request.url),
                     title=FEED_TITLE, now_ms=now)
    return Response(body, media_type=ATOM_MEDIA_TYPE)
