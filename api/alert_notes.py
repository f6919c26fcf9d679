"""An alert's assignee and comment thread (table alert_notes, from the alerter over topic alerts.notes)."""

from __future__ import annotations

from typing import Any

from api.incidents_sql import alert_notes_sql
from api.state import ApiState


async def alert_notes(state: ApiState, alert_id: str) -> dict[str, Any]:
    """{"assignee": the latest assignment ("" when none), "comments": [{by, at, comment}] oldest first}."""
    rows = await state.query(alert_notes_sql(state.settings.clickhouse_database, alert_id))
    assigned = [r for r in rows if r["kind"] == "assigned"]
    return {"assignee": assigned[-1]["assignee"] if assigned else "",
            "comments": [{"by": r["by"], "at": r["at"], "comment": r["comment"]} for r in rows
                         if r["kind"] == "commented"]}
