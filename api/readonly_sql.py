"""Read-only SQL for analysts (POST /query), enforced by ClickHouse itself, not by parsing SQL.

- read-only: a dedicated connection with `readonly=1` (writes, DDL, file()/url() and changing
  any setting are refused by the engine);
- limits: `max_execution_time`, `max_result_rows` with `result_overflow_mode=throw`, a memory cap;
- the project's database only: ClickHouse's analyzer (`EXPLAIN QUERY TREE`) names every table the
  query reads, through views, CTEs, joins and subqueries; anything outside the database is refused.
In server mode the same settings apply per query; analysts with direct access use the read-only
ClickHouse user of docker-compose.yml instead.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from controlroom.errors import ControlRoomError
from controlroom.settings import Settings
from controlroom.warehouse import check_identifier, embedded_engine

ALLOWED_TABLE_FUNCTIONS = {"numbers", "one", "zeros"}  # generate data, read nothing
ALLOWED_TABLES = {"system.one"}  # what `SELECT 1` (no FROM) reads
_TABLE = re.compile(r"\btable_name: ([^\s,]+)")
_FUNCTION = re.compile(r"\btable_function_name: ([^\s,]+)")


class QueryRefused(ControlRoomError):
    """The query is not allowed (writes, runs past a limit, cannot be analysed…)."""


class QueryForbidden(QueryRefused):
    """The query reads what this key may not read (another database, such as the admin one): a 403."""


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    csv: bytes | None = None


def limit_settings(settings: Settings) -> dict[str, Any]:
    return {"readonly": 1, "max_execution_time": settings.query_max_seconds,
            "max_result_rows": settings.query_max_rows, "result_overflow_mode": "throw",
            "max_memory_usage": 2 << 30}


def tables_outside(explain: str, database: str) -> list[str]:
    """Pure: what an EXPLAIN QUERY TREE says the query reads outside `database`."""
    bad = [t for t in _TABLE.findall(explain) if not t.startswith(f"{database}.") and t not in ALLOWED_TABLES]
    bad += [f"{f}()" for f in _FUNCTION.findall(explain) if f not in ALLOWED_TABLE_FUNCTIONS]
    return sorted(set(bad))


class AnalystQueries:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.database = settings.clickhouse_database
        url = settings.clickhouse_url.get_secret_value()
        self._lock = threading.Lock()
        limits = limit_settings(settings)
        if url.startswith("chdb://"):
            chdb = embedded_engine()
            path = url[len("chdb://"):]
            opts = "&".join(f"{k}={v}" for k, v in limits.items())
            self._connect = chdb.connect
            # `{db}`: the database the caller reads, the project's or its provinces' views (api/scope.py)
            self._query_dsn = f"{path}?{opts}&database={{db}}&output_format_json_quote_64bit_integers=0"
            # EXPLAIN's own output must not count against the row limit: its own read-only connection
            self._explain_dsn = f"{path}?readonly=1&database={{db}}"
            self._server = None
        else:
            from controlroom.warehouse import ServerWarehouse

            self._server = ServerWarehouse(url, self.database)
            self._limits = limits

    def _raw(self, sql: str, fmt: str, database: str, *, explain: bool = False) -> bytes:
        try:
            if self._server is None:
                # A fresh connection per query (about 3 ms): after a failed query chDB hands the next
                # query on the same connection the failed one's partial output too.
                with self._lock:
                    dsn = self._explain_dsn if explain else self._query_dsn
                    conn = self._connect(dsn.replace("{db}", check_identifier(database)))
                    try:
                        return bytes(conn.query(sql, fmt).bytes())
                    finally:
                        conn.close()
            # the same HTTP client, no session (concurrent /query calls never share one); settings for this query
            return self._server.raw_query(sql, {"readonly": 1} if explain else self._limits, fmt, database)
        except Exception as exc:  # the engine's own words: readonly, timeout, too many rows, syntax
            message = str(exc).strip().splitlines()[0][:500]
            raise QueryRefused(_clean(message)) from exc

    def run(self, sql: str, fmt: Literal["json", "csv"] = "json", database: str | None = None) -> QueryResult:
        """`database`: what the caller may read (api/scope.py: a province-scoped key's views); the project's own by
        default. Unqualified names resolve there."""
        db = database or self.database
        sql = sql.strip().rstrip(";")
        if not sql:
            raise QueryRefused("sql is empty")
        try:
            explain = self._raw(f"EXPLAIN QUERY TREE {sql}", "TSVRaw", db, explain=True).decode("utf-8", "replace")
        except QueryRefused as exc:
            raise QueryRefused(f"only a single SELECT query can run here; ClickHouse could not analyse it: {exc}") \
                from exc
        outside = tables_outside(explain, db)
        if outside:
            raise QueryForbidden(f"only the {db} database can be queried; this reads {', '.join(outside)}")
        if fmt == "csv":
            return QueryResult([], [], self._raw(sql, "CSVWithNames", db))
        doc = orjson.loads(self._raw(sql, "JSONCompact", db) or b"{}")
        return QueryResult([c["name"] for c in doc.get("meta", [])], doc.get("data", []))

    def close(self) -> None:
        if self._server is not None:
            self._server.close()


def _clean(message: str) -> str:
    """ClickHouse messages start with 'Code: N. DB::Exception: '; keep the sentence an analyst needs."""
    message = re.sub(r"^.*?DB::Exception: (default: )?", "", message)
    return message or "query failed"


