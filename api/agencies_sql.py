"""SQL for the agencies' contract figures and quality score (api/agencies_route.py): pure builders of (sql, params).

They read the views of migration 0017 in the caller's database: a province-scoped key's views hold its provinces'
centers only (api/scope.py), so their scores are all it sees.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controlroom.warehouse import check_identifier

VN_TZ = "Asia/Ho_Chi_Minh"  # a score's day is the operations center's day
VN = timedelta(hours=7)


def vn_day(ms: int, days_back: int = 0) -> str:
    """The Vietnamese calendar day (YYYY-MM-DD) of `ms`, or `days_back` days before it."""
    return (datetime.fromtimestamp(ms / 1000, UTC) + VN - timedelta(days=days_back)).date().isoformat()


def daily_scores_sql(database: str, since_day: str, agency: str | None = None) -> tuple[str, dict[str, Any]]:
    """The daily score of every agency (or one) from `since_day` (YYYY-MM-DD, Vietnam time) on, oldest day first."""
    db = check_identifier(database)
    one = " AND agency = {agency:String}" if agency else ""
    return (f"SELECT agency, day, score, contract_hours, completeness, timeliness, validity, volume, "
            f"worst_feed, worst_quality FROM {db}.agency_scores_daily WHERE day >= toDate({{since:String}}){one} "
            "ORDER BY agency, day"), {"since": since_day, "agency": agency}


def contract_day_sql(database: str, day: str, agency: str | None = None) -> tuple[str, dict[str, Any]]:
    """Per contract (agency × feed), its measures over the judged hours of one day (Vietnam time). Columns are named
    through the alias `h`: the aggregates' aliases are the columns' names, which ClickHouse would otherwise read."""
    db = check_identifier(database)
    one = " AND agency = {agency:String}" if agency else ""
    measures = ", ".join(f"avg(h.{m}) AS {m}" for m in ("quality", "completeness", "timeliness", "validity", "volume"))
    totals = ", ".join(f"sum(h.{m}) AS {m}" for m in ("readings", "late", "dead"))
    return (f"SELECT h.agency AS agency, h.feed AS feed, {measures}, {totals}, count() AS hours, "
            f"min(h.quality) AS worst_quality FROM (SELECT * FROM {db}.contract_hourly "
            f"WHERE toDate(hour, '{VN_TZ}') = toDate({{day:String}}) AND quality IS NOT NULL{one}) AS h "
            "GROUP BY h.agency, h.feed ORDER BY agency, feed"), {"day": day, "agency": agency}
