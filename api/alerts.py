"""Alert endpoints: current alerts with evidence and history, acknowledgements, silences, rules and
subscriptions (issue 4).

Reads come from ClickHouse (the sink stores every alert event). Changes are commands on topic
alerts.control, which the alerter (rules, silences, acks) and the notifier (subscriptions) follow;
rules, silences and subscriptions are also written here as versioned rows, so they can be listed at
once and survive the broker. Every change goes through `require(role)` and the audit log.
Roles: viewers read; operators acknowledge and silence; admins change rules and subscriptions.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import orjson
import pyarrow as pa
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api import alerts_sql
from api.alert_notes import alert_notes
from api.auth import require
from api.backtest import backtest
from api.state import api_state
from controlroom.alerts.backtest import BacktestError
from controlroom.alerts.inhibit import inhibition_note
from controlroom.alerts.rules import RuleError, effective_rule_docs, parse_rule, read_rule_docs
from controlroom.alerts.signing import subscription_secret
from controlroom.alerts.silences import SILENCE_FIELDS, matcher_field_error
from controlroom.alerts.subscriptions import new_subscription_id, parse_subscription, subscription_to_doc
from controlroom.catalog import NATIONAL
from controlroom.errors import ControlRoomError
from controlroom.reports import default_forms
from controlroom.schema import CONTROL_TOPIC, SEVERITIES, ControlCommand, control_message
from controlroom.schema import now_ms as _now_ms
from controlroom.security import Principal
from controlroom.warehouse import table_in

router = APIRouter(tags=["alerts"])

ALERT_ID = Path(pattern="^[0-9a-f]{16}$", description="16 hex digits (from /alerts)")
MAX_SILENCE_MS = 30 * 86_400_000


def _unprocessable(field: str, msg: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *field.split(".")], "msg": msg, "type": "value_error"}])


def _rule_error(exc: ControlRoomError, prefix: str) -> HTTPException:
    """A validator message 'path: problem' → 422 naming the field."""
    text = str(exc)
    path, sep, msg = text.partition(": ")
    if not sep:
        return _unprocessable("body", text)
    path = path.removeprefix(prefix).lstrip(".") or "body"
    return HTTPException(422, [{"loc": ["body", *path.replace("[", ".").replace("]", "").split(".")],
                                "msg": msg, "type": "value_error"}])


def _remote(request: Request) -> str:
    return request.client.host if request.client else ""


_TS = pa.timestamp("ms", tz="UTC")
_VERSIONED: dict[str, pa.Schema] = {  # the columns of the versioned tables in migration 0003
    "alert_rules": pa.schema([("rule_id", pa.string()), ("version", pa.uint32()), ("doc", pa.string()),
                              ("deleted", pa.uint8()), ("changed_at", _TS), ("changed_by", pa.string())]),
    "silences": pa.schema([("silence_id", pa.string()), ("version", pa.uint64()),
                           ("matchers", pa.map_(pa.string(), pa.string())), ("starts_at", _TS), ("ends_at", _TS),
                           ("comment", pa.string()), ("created_by", pa.string()), ("deleted", pa.uint8())]),
    "subscriptions": pa.schema([("subscription_id", pa.string()), ("version", pa.uint64()), ("doc", pa.string()),
                                ("created_by", pa.string()), ("deleted", pa.uint8())]),
}


async def _insert(request: Request, table: str, row: dict[str, Any]) -> None:
    """One versioned row (times in epoch ms or datetimes)."""
    schema = _VERSIONED[table]
    cols = {}
    for f in schema:
        v = row[f.name]
        if f.type == pa.map_(pa.string(), pa.string()):
            v = list(v.items())
        cols[f.name] = pa.array([v], f.type)
    wh = api_state(request).warehouse
    await run_in_threadpool(wh.insert_arrow, table_in(wh.database, table), pa.table(cols, schema=schema), None)


async def _command(request: Request, kind: str, who: Principal, **payload: Any) -> ControlCommand:
    """Publish a command on alerts.control and wait for the broker's ack."""
    producer = await api_state(request).producer(CONTROL_TOPIC)
    msg = control_message(kind, by=who.name, at_ms=_now_ms(), **payload)
    await (await producer.send(CONTROL_TOPIC, orjson.dumps(msg), key=kind.encode()))
    return msg


async def _audit(request: Request, who: Principal, action: str, target: str, before: Any = None,
                 after: Any = None) -> None:
    await run_in_threadpool(api_state(request).security.audit.record, actor=who, action=action, target=target,
                            before=before, after=after, remote=_remote(request))


# --- alerts ---------------------------------------------------------------------------------------------

def alert_out(row: dict[str, Any]) -> dict[str, Any]:
    """A row of alerts_current or alert_events as the API answers it (times in epoch ms, evidence decoded)."""
    out = dict(row)
    out["evidence"] = orjson.loads(row["evidence"] or "{}")
    out["starts_at"], out["ends_at"], out["event_at"] = row["starts_at_ms"], row["ends_at_ms"], row["event_at_ms"]
    for k in ("starts_at_ms", "ends_at_ms", "event_at_ms", "ack_by", "ack_comment"):
        out.pop(k, None)
    out["ack"] = {"by": row["ack_by"], "comment": row["ack_comment"]} if row["ack_by"] else None
    out["silenced"] = bool(row["silenced"])
    out["inhibited_by"] = row.get("inhibited_by") or None
    return out


async def _explain_inhibitions(request: Request, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `inhibited` ({by, rule_id, feed, province, note}) to each inhibited alert: what mutes it, and why."""
    ids = sorted({str(a["inhibited_by"]) for a in alerts if a.get("inhibited_by")})
    if not ids:
        return alerts
    state = api_state(request)
    rows = await state.query(alerts_sql.sources_sql(await state.database_for(request), ids))
    sources = {r["alert_id"]: r for r in rows}
    for a in alerts:
        by = a.get("inhibited_by")
        if by:
            src = sources.get(by)
            a["inhibited"] = {"by": by, "rule_id": src["rule_id"] if src else None,
                              "source_state": src["state"] if src else None,
                              "note": inhibition_note(by, src), "note_vi": inhibition_note(by, src, "vi")}
    return alerts


@router.get("/alerts", summary="Alerts: pending and firing by default, worst and newest first")
async def list_alerts(
    request: Request, _: Annotated[Principal, Depends(require("viewer"))],
    state: Annotated[Literal["active", "pending", "firing", "resolved", "all"], Query()] = "active",
    severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
    feed: Annotated[str | None, Query(max_length=64)] = None,
    province: Annotated[str | None, Query(max_length=8)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[dict[str, Any]]:
    api = api_state(request)
    catalog = api.catalog
    if feed is not None and feed not in catalog.feeds and feed not in default_forms():  # a form: its deadline alerts
        raise HTTPException(422, [{"loc": ["query", "feed"], "msg": f"unknown feed or report form {feed!r}",
                                   "type": "value_error"}])
    if province is not None and province not in catalog.provinces and province != NATIONAL:
        raise HTTPException(422, [{"loc": ["query", "province"], "msg": f"unknown province code {province!r}",
                                   "type": "value_error"}])
    states = {"active": ("pending", "firing"), "all": alerts_sql.STATES}.get(state, (state,))
    rows = await api.query(alerts_sql.alerts_sql(await api.database_for(request), states=states,
                                                 severity=severity, feed=feed, province=province, limit=limit))
    return await _explain_inhibitions(request, [alert_out(r) for r in rows])


async def current_alert(request: Request, alert_id: str) -> dict[str, Any]:
    """The alert's current row (alerts_current); 404 when there is no such alert, or none in the caller's provinces
    (api/scope.py: what follows may then read the alert's own rows in the project's database)."""
    state = api_state(request)
    rows = await state.query(alerts_sql.alert_sql(await state.database_for(request), alert_id))
    if not rows:
        raise HTTPException(404, f"no alert {alert_id}")
    return rows[0]


@router.get("/alerts/{alert_id}", summary="One alert: current state, evidence, every event and delivery (the "
                                          "delivery targets, webhook addresses and e-mails, for admins only)")
async def get_alert(request: Request, who: Annotated[Principal, Depends(require("viewer"))],
                    alert_id: Annotated[str, ALERT_ID]) -> dict[str, Any]:
    state = api_state(request)
    db = state.settings.clickhouse_database
    out = (await _explain_inhibitions(request, [alert_out(await current_alert(request, alert_id))]))[0]
    out["history"] = [alert_out(r) for r in await state.query(alerts_sql.history_sql(db, alert_id))]
    deliveries = await state.query(alerts_sql.deliveries_sql(db, alert_id))
    if not who.has_role("admin"):  # where notifications go is configuration (GET /subscriptions is admin-only too)
        deliveries = [{k: v for k, v in d.items() if k != "target"} for d in deliveries]
    out["deliveries"] = deliveries
    out.update(await alert_notes(state, alert_id))  # assignee and comments
    return out


class AckRequest(BaseModel):
    comment: str = Field("", max_length=1000)


@router.post("/alerts/{alert_id}/ack", status_code=202,
             summary="Acknowledge: stops repeats and escalation of this episode (applied by the alerter)")
async def ack_alert(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                    alert_id: Annotated[str, ALERT_ID], body: AckRequest) -> dict[str, Any]:
    if (await current_alert(request, alert_id))["state"] == "resolved":
        raise HTTPException(409, f"alert {alert_id} is resolved: nothing to acknowledge")
    await _command(request, "ack", who, alert_id=alert_id, comment=body.comment)
    await _audit(request, who, "alert.ack", alert_id, after={"comment": body.comment})
    return {"alert_id": alert_id, "accepted": True, "by": who.name, "comment": body.comment}


# --- silences ---------------------------------------------------------------------------------------------

class SilenceRequest(BaseModel):
    matchers: dict[str, str] = Field(min_length=1, description=f"{', '.join(SILENCE_FIELDS)} or dims.<name>")
    starts_at: int | None = Field(None, description="epoch ms; default now")
    ends_at: int | None = Field(None, description="epoch ms; or give duration_s")
    duration_s: float | None = Field(None, gt=0)
    comment: str = Field("", max_length=1000)


def _silence_out(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["silence_id"], "matchers": row["matchers"],
            "starts_at": int(row["starts_at"].timestamp() * 1000), "ends_at": int(row["ends_at"].timestamp() * 1000),
            "comment": row["comment"], "created_by": row["created_by"]}


async def _silences(request: Request) -> list[dict[str, Any]]:
    state = api_state(request)
    db = state.settings.clickhouse_database
    rows = await state.query(alerts_sql.latest_versions_sql(db, "silences", "silence_id"))
    return [r for r in rows if not r["deleted"]]


def _in_scope(who: Principal, matchers: dict[str, str]) -> bool:
    """A silence is a province-scoped key's when it names one of the key's provinces (one naming none silences
    every province: a national key's). National keys: every silence."""
    return not who.provinces or matchers.get("province") in who.provinces


@router.get("/silences", summary="Silences in force or to come (a province-scoped key: those that can hold back "
                                 "its provinces' alerts)")
async def list_silences(request: Request, who: Annotated[Principal, Depends(require("viewer"))]
                        ) -> list[dict[str, Any]]:
    now = _now_ms()
    return [s for s in map(_silence_out, await _silences(request))
            if s["ends_at"] > now and ("province" not in s["matchers"] or _in_scope(who, s["matchers"]))]


@router.post("/silences", status_code=201, summary="Silence matching alerts for a time range")
async def create_silence(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                         body: SilenceRequest) -> dict[str, Any]:
    for name in body.matchers:
        if (error := matcher_field_error(name)) is not None:
            raise _unprocessable(f"matchers.{name}", error)
    if body.matchers.get("severity", "info") not in SEVERITIES:
        raise _unprocessable("matchers.severity", f"must be one of {', '.join(SEVERITIES)}")
    if not _in_scope(who, body.matchers):
        raise HTTPException(403, f"this key may silence only its provinces ({', '.join(sorted(who.provinces))}): "
                                 "give matchers.province")
    starts = body.starts_at if body.starts_at is not None else _now_ms()
    if (body.ends_at is None) == (body.duration_s is None):
        raise _unprocessable("ends_at", "give exactly one of ends_at, duration_s")
    ends = body.ends_at if body.ends_at is not None else starts + int((body.duration_s or 0) * 1000)
    if ends <= starts:
        raise _unprocessable("ends_at", "must be after starts_at")
    if ends - starts > MAX_SILENCE_MS:
        raise _unprocessable("ends_at", "a silence lasts at most 30 days")
    sid = "sil-" + secrets.token_hex(6)
    silence = {"id": sid, "matchers": body.matchers, "starts_ms": starts, "ends_ms": ends, "comment": body.comment}
    await _insert(request, "silences", {"silence_id": sid, "version": _now_ms(), "matchers": body.matchers,
                                        "starts_at": starts, "ends_at": ends, "comment": body.comment,
                                        "created_by": who.name, "deleted": 0})
    await _command(request, "silence.put", who, silence=silence)
    await _audit(request, who, "silence.create", sid, after=silence)
    return {"id": sid, "matchers": body.matchers, "starts_at": starts, "ends_at": ends, "comment": body.comment,
            "created_by": who.name}


@router.delete("/silences/{silence_id}", summary="End a silence now; what it held back is notified")
async def delete_silence(request: Request, who: Annotated[Principal, Depends(require("operator"))],
                         silence_id: Annotated[str, Path(pattern="^sil-[0-9a-f]{12}$")]) -> dict[str, Any]:
    row = next((r for r in await _silences(request) if r["silence_id"] == silence_id), None)
    if row is None:
        raise HTTPException(404, f"no silence {silence_id}")
    if not _in_scope(who, dict(row["matchers"])):
        raise HTTPException(403, f"silence {silence_id} is not only this key's provinces' to end")
    await _insert(request, "silences", {**row, "version": max(_now_ms(), int(row["version"]) + 1), "deleted": 1})
    await _command(request, "silence.delete", who, silence_id=silence_id)
    await _audit(request, who, "silence.delete", silence_id, before=_silence_out(row))
    return {"id": silence_id, "deleted": True}


# --- rules ------------------------------------------------------------------------------------------------

async def _rule_state(request: Request) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(the rules file's docs, {rule id: {"version", "doc" | None}} as changed through the API)."""
    state = api_state(request)
    base = state.base_rule_docs
    if base is None:
        base = await run_in_threadpool(read_rule_docs, state.settings.alert_rules_file, state.catalog)
        state.base_rule_docs = base
    rows = await state.query(alerts_sql.latest_versions_sql(state.settings.clickhouse_database, "alert_rules",
                                                            "rule_id"))
    return base, alerts_sql.stored_rules(rows)


def _next_version(rule_id: str, base: list[dict[str, Any]], stored: dict[str, dict[str, Any]]) -> int:
    versions = [int(d["version"]) for d in base if d["id"] == rule_id]
    if rule_id in stored:
        versions.append(int(stored[rule_id]["version"]))
    return max(versions, default=0) + 1


async def rules_in_force(request: Request) -> dict[str, dict[str, Any]]:
    """{rule id: doc} of the rules in force (the rules file overlaid by API changes)."""
    base, stored = await _rule_state(request)
    return effective_rule_docs(base, stored)


@router.get("/rules", summary="Rules in force (the rules file overlaid by API changes), with versions")
async def list_rules(request: Request, _: Annotated[Principal, Depends(require("viewer"))]) -> list[dict[str, Any]]:
    return [doc for _, doc in sorted((await rules_in_force(request)).items())]


async def _rule_in_force(request: Request, rule_id: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                    dict[str, dict[str, Any]]]:
    """(the rule's doc, the rules file's docs, the API's changes); 404 when no such rule is in force."""
    base, stored = await _rule_state(request)
    doc = effective_rule_docs(base, stored).get(rule_id)
    if doc is None:
        raise HTTPException(404, f"no rule {rule_id!r}")
    return doc, base, stored


@router.get("/rules/{rule_id}", summary="One rule in force")
async def get_rule(request: Request, _: Annotated[Principal, Depends(require("viewer"))],
                   rule_id: Annotated[str, Path(max_length=80)]) -> dict[str, Any]:
    doc, _base, _stored = await _rule_in_force(request, rule_id)
    return doc


async def _put_rule(request: Request, who: Annotated[Principal, Any], doc: dict[str, Any], *,
                    creating: bool) -> dict[str, Any]:
    rule_id = doc.get("id")
    if not isinstance(rule_id, str):
        raise _unprocessable("id", "is required (a string)")
    base, stored = await _rule_state(request)
    current = effective_rule_docs(base, stored).get(rule_id)
    if creating and current is not None:
        raise HTTPException(409, f"rule {rule_id!r} exists: PUT /rules/{rule_id} changes it")
    if not creating and current is None:
        raise HTTPException(404, f"no rule {rule_id!r}")
    doc = {**doc, "version": _next_version(rule_id, base, stored)}  # the server numbers versions
    try:
        parse_rule(doc, "rule", api_state(request).catalog)
    except RuleError as exc:
        raise _rule_error(exc, "rule") from exc
    await _insert(request, "alert_rules", {"rule_id": rule_id, "version": doc["version"],
                                           "doc": orjson.dumps(doc).decode(), "deleted": 0,
                                           "changed_at": _now_ms(), "changed_by": who.name})
    await _command(request, "rule.put", who, rule=doc)
    await _audit(request, who, "rule.create" if creating else "rule.update", rule_id, before=current, after=doc)
    return doc


RULE_BODY = Body(description="a rule document as in controlroom/data/rules.yaml; `version` is assigned")


@router.post("/rules", status_code=201, summary="Create a rule (validated; applied by the alerter at once)")
async def create_rule(request: Request, who: Annotated[Principal, Depends(require("admin"))],
                      doc: Annotated[dict[str, Any], RULE_BODY]) -> dict[str, Any]:
    return await _put_rule(request, who, doc, creating=True)


@router.put("/rules/{rule_id}", summary="Change a rule: a new version, applied without a restart")
async def update_rule(request: Request, who: Annotated[Principal, Depends(require("admin"))],
                      rule_id: Annotated[str, Path(max_length=80)],
                      doc: Annotated[dict[str, Any], RULE_BODY]) -> dict[str, Any]:
    if doc.get("id", rule_id) != rule_id:
        raise _unprocessable("id", f"must be {rule_id!r} (the rule in the path)")
    return await _put_rule(request, who, {**doc, "id": rule_id}, creating=False)


@router.delete("/rules/{rule_id}", summary="Delete a rule: its open alerts resolve")
async def delete_rule(request: Request, who: Annotated[Principal, Depends(require("admin"))],
                      rule_id: Annotated[str, Path(max_length=80)]) -> dict[str, Any]:
    current, base, stored = await _rule_in_force(request, rule_id)
    version = _next_version(rule_id, base, stored)
    await _insert(request, "alert_rules", {"rule_id": rule_id, "version": version, "doc": "", "deleted": 1,
                                           "changed_at": _now_ms(), "changed_by": who.name})
    await _command(request, "rule.delete", who, rule_id=rule_id, version=version)
    await _audit(request, who, "rule.delete", rule_id, before=current)
    return {"id": rule_id, "version": version, "deleted": True}


class BacktestRequest(BaseModel):
    rule: Any = Field(description="a rule document as GET /rules/{id} returns it, new or changed")
    from_: int | float | str = Field(alias="from", description="epoch seconds or ISO 8601 time (UTC when no zone)")
    to: int | float | str = Field(description="end, exclusive (same forms)")


@router.post("/rules/backtest", summary="The alerts a rule would have raised on stored history, and the "
                                        "difference against its current version")
async def backtest_rule(request: Request, _: Annotated[Principal, Depends(require("operator"))],
                        body: BacktestRequest) -> dict[str, Any]:
    state = api_state(request)
    base, stored = await _rule_state(request)
    try:
        return await run_in_threadpool(backtest, state.warehouse, state.catalog, body.rule, body.from_, body.to,
                                       effective_rule_docs(base, stored))
    except (RuleError, BacktestError) as exc:
        raise _rule_error(exc, "") from exc


# --- subscriptions ----------------------------------------------------------------------------------------

def _signing_key(request: Request) -> str | None:
    key = api_state(request).settings.notify_signing_key
    return None if key is None else str(key.get_secret_value())


async def _subscriptions(request: Request) -> list[dict[str, Any]]:
    state = api_state(request)
    db = state.settings.clickhouse_database
    rows = await state.query(alerts_sql.latest_versions_sql(db, "subscriptions", "subscription_id"))
    return [orjson.loads(r["doc"]) for r in rows if not r["deleted"]]


@router.get("/subscriptions", summary="Who is notified of what (admins)")
async def list_subscriptions(request: Request,
                             _: Annotated[Principal, Depends(require("admin"))]) -> list[dict[str, Any]]:
    return await _subscriptions(request)


@router.post("/subscriptions", status_code=201,
             summary="Subscribe a webhook or an e-mail address; a webhook's signing secret is in the answer")
async def create_subscription(request: Request, who: Annotated[Principal, Depends(require("admin"))],
                              doc: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    doc = {**doc, "id": doc.get("id") or new_subscription_id()}
    try:
        sub = parse_subscription(doc, api_state(request).catalog)
    except ControlRoomError as exc:
        raise _rule_error(exc, "") from exc
    if any(s["id"] == sub.id for s in await _subscriptions(request)):
        raise HTTPException(409, f"subscription {sub.id!r} exists")
    master = _signing_key(request)
    if sub.channel == "webhook" and master is None:
        raise HTTPException(503, "NOTIFY_SIGNING_KEY is not set: webhooks cannot be signed")
    out = subscription_to_doc(sub)
    await _insert(request, "subscriptions", {"subscription_id": sub.id, "version": _now_ms(),
                                             "doc": orjson.dumps(out).decode(), "created_by": who.name,
                                             "deleted": 0})
    await _command(request, "subscription.put", who, subscription=out)
    await _audit(request, who, "subscription.create", sub.id, after=out)
    if sub.channel == "webhook" and master is not None:
        return {**out, "secret": subscription_secret(master, sub.id)}
    return out


@router.delete("/subscriptions/{subscription_id}", summary="Unsubscribe")
async def delete_subscription(request: Request, who: Annotated[Principal, Depends(require("admin"))],
                              subscription_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
    current = next((s for s in await _subscriptions(request) if s["id"] == subscription_id), None)
    if current is None:
        raise HTTPException(404, f"no subscription {subscription_id!r}")
    await _insert(request, "subscriptions", {"subscription_id": subscription_id, "version": _now_ms(),
                                             "doc": orjson.dumps(current).decode(), "created_by": who.name,
                                             "deleted": 1})
    await _command(request, "subscription.delete", who, subscription_id=subscription_id)
    await _audit(request, who, "subscription.delete", subscription_id, before=current)
    return {"id": subscription_id, "deleted": True}
