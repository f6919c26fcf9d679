"""SQL for the report submissions (api/reports.py), as pure builders returning (sql, params)."""

from __future__ import annotations

from typing import Any

from api.versions_sql import versions_sql
from controlroom.warehouse import check_identifier

_COLUMNS = ("unit, revision, status, values, problems, agency, submitted_by, "
            "toUnixTimestamp64Milli(submitted_at) AS submitted_at_ms, on_time, comment")


def submissions_sql(database: str, form: str, period: str, unit: str | None,
                    history: bool) -> tuple[str, dict[str, Any]]:
    """The revisions of a report for a period: every one (history), or the latest per unit; one unit or all."""
    return versions_sql(database, "report_submissions", _COLUMNS, {
        "form": ("String", form), "period": ("String", period), "unit": ("String", unit)}, "unit", "revision DESC",
        history)


def latest_revision_sql(database: str, form: str, period: str, unit: str) -> tuple[str, dict[str, Any]]:
    """The latest submitted (not draft) revision of one unit's report."""
    db = check_identifier(database)
    return (f"SELECT {_COLUMNS} FROM {db}.report_submissions FINAL WHERE form = {{form:String}} "
            "AND period = {period:String} AND unit = {unit:String} AND status = 'submitted' "
            "ORDER BY revision DESC LIMIT 1"), {"form": form, "period": period, "unit": unit}


def next_revision_sql(database: str, form: str, period: str, unit: str) -> tuple[str, dict[str, Any]]:
    db = check_identifier(database)
    return (f"SELECT max(revision) + 1 AS r FROM {db}.report_submissions WHERE form = {{form:String}} "
            "AND period = {period:String} AND unit = {unit:String}"), {"form": form, "period": period, "unit": unit}


def reviews_sql(database: str, form: str, periods: list[str]) -> tuple[str, dict[str, Any]]:
    """Every review step of a form's reports for these periods, oldest first."""
    db = check_identifier(database)
    params: dict[str, Any] = {"form": form, **{f"p{n}": label for n, label in enumerate(periods)}}
    inside = ", ".join(f"{{p{n}:String}}" for n in range(len(periods)))
    return (f"SELECT unit, period, revision, step, reviewed_by, toUnixTimestamp64Milli(reviewed_at) AS at_ms, comment "
            f"FROM {db}.report_reviews FINAL WHERE form = {{form:String}} AND period IN ({inside}) "
            "ORDER BY at_ms"), params


def submitted_reports_sql(database: str, since_ms: int,
                          reports: list[tuple[str, str]] | None = None) -> tuple[str, dict[str, Any]]:
    """Each report submitted (not only drafted) since `since_ms`, of these (form, period) pairs if given: its latest
    revision, its first submission, whether that was on time and who sent it (what the alerter is told,
    api/report_events.py; the wall's reports tile)."""
    db = check_identifier(database)
    params: dict[str, Any] = {"since": since_ms}
    only = ""
    if reports is not None:
        for n, (form, period) in enumerate(reports):
            params[f"f{n}"], params[f"p{n}"] = form, period
        pairs = ", ".join(f"({{f{n}:String}}, {{p{n}:String}})" for n in range(len(reports)))
        only = f"AND (form, period) IN ({pairs}) " if reports else "AND 0 "
    return (f"SELECT form, period, unit, max(revision) AS revision, "
            "toUnixTimestamp64Milli(min(submitted_at)) AS first_ms, argMin(agency, submitted_at) AS agency, "
            f"argMin(on_time, submitted_at) AS on_time FROM {db}.report_submissions FINAL WHERE status = 'submitted' "
            f"AND submitted_at >= fromUnixTimestamp64Milli({{since:Int64}}) {only}GROUP BY form, period, unit "
            "ORDER BY form, period, unit"), params
