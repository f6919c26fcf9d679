"""SQL for the incident endpoints and alert notes, as pure builders returning (sql, params)."""

from __future__ import annotations

from api.series_sql import Params
from controlroom.warehouse import check_identifier

_TIMES = ("toUnixTimestamp64Milli(opened_at) AS opened_at, "
          "if(isNull(resolved_at), NULL, toUnixTimestamp64Milli(assumeNotNull(resolved_at))) AS resolved_at, "
          "toUnixTimestamp64Milli(event_at) AS event_at")
_CURRENT = ("incident_id, seq, type, type_version, scope, province, severity, event, state, title_vi, title_en, "
            f"assignee, ack_by, ack_comment, signals, members, alert_ids, {_TIMES}")
STATES = ("open", "acknowledged", "resolved")


def incidents_sql(database: str, *, states: tuple[str, ...], province: str | None, type_id: str | None,
                  limit: int) -> tuple[str, Params]:
    """Current incidents, worst and newest first. `states` is validated by the caller."""
    params: Params = {"limit": limit}
    where = [f"state IN ({', '.join(repr(s) for s in states if s in STATES)})"]
    for name, column, value in (("province", "province", province), ("type", "type", type_id)):
        if value is not None:
            where.append(f"{column} = {{{name}:String}}")
            params[name] = value
    db = check_identifier(database)
    return (f"SELECT {_CURRENT} FROM {db}.incidents_current FINAL WHERE {' AND '.join(where)} "
            f"ORDER BY indexOf(['info', 'warning', 'critical'], severity) DESC, opened_at DESC "
            f"LIMIT {{limit:Int64}}", params)


def incident_sql(database: str, incident_id: str) -> tuple[str, Params]:
    db = check_identifier(database)
    return (f"SELECT {_CURRENT} FROM {db}.incidents_current FINAL WHERE incident_id = {{id:String}}",
            {"id": incident_id})


def timeline_sql(database: str, incident_id: str) -> tuple[str, Params]:
    db = check_identifier(database)
    return (f"SELECT seq, event, state, alert_id, signal, by, comment, assignee, "
            f"toUnixTimestamp64Milli(event_at) AS at FROM {db}.incident_events FINAL "
            f"WHERE incident_id = {{id:String}} ORDER BY seq", {"id": incident_id})


def incidents_of_alert_sql(database: str, alert_id: str) -> tuple[str, Params]:
    """The incidents an alert belongs to (any state), oldest first."""
    db = check_identifier(database)
    return (f"SELECT incident_id FROM {db}.incidents_current FINAL WHERE has(alert_ids, {{id:String}}) "
            f"ORDER BY opened_at, incident_id", {"id": alert_id})


def member_alerts_sql(database: str, alert_ids: list[str]) -> tuple[str, Params]:
    """The current state of an incident's member alerts."""
    db = check_identifier(database)
    return (f"SELECT alert_id, seq, rule_id, severity, state, feed, province, dims, summary_vi, summary_en, value, "
            f"toUnixTimestamp64Milli(event_at) AS event_at, link FROM {db}.alerts_current FINAL "
            f"WHERE has({{ids:Array(String)}}, alert_id) ORDER BY alert_id", {"ids": alert_ids})


def alert_notes_sql(database: str, alert_id: str) -> tuple[str, Params]:
    db = check_identifier(database)
    return (f"SELECT note_id, kind, by, toUnixTimestamp64Milli(at) AS at, assignee, comment "
            f"FROM {db}.alert_notes FINAL WHERE alert_id = {{id:String}} ORDER BY at, note_id", {"id": alert_id})
