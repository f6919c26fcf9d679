"""SQL for tables that keep every version of a thing (targets, report revisions): the newest per key, or all."""

from __future__ import annotations

from typing import Any

from controlroom.warehouse import check_identifier


def versions_sql(database: str, table: str, columns: str, match: dict[str, tuple[str, Any]], per: str,
                 newest_first: str, history: bool) -> tuple[str, dict[str, Any]]:
    """SELECT `columns` FROM `table` FINAL where each `match` column equals its value (type, value; a None value
    matches all), ordered by `per` then `newest_first`: every version (history), or only the newest per `per`."""
    db = check_identifier(database)
    where, params = [], {}
    for column, (ch_type, value) in match.items():
        if value is not None:
            where.append(f"{column} = {{{column}:{ch_type}}}")
            params[column] = value
    limit = "" if history else f" LIMIT 1 BY {per}"
    return (f"SELECT {columns} FROM {db}.{table} FINAL WHERE {' AND '.join(where) or '1'} "
            f"ORDER BY {per}, {newest_first}{limit}"), params
