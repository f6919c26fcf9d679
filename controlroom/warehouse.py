"""One small interface over ClickHouse: embedded chDB (chdb://path) or a server (http(s)://…) via clickhouse-connect.

Everything above this module (migrations, sink, API) speaks only `Warehouse`, so both run modes share
one code path. Query parameters use ClickHouse `{name:Type}` placeholders on both backends: the values
never become SQL text, so they cannot inject. The URL may hold a password: it is never logged or put in
an error message.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import pyarrow as pa

from controlroom.errors import ConfigError, WarehouseError
from controlroom.settings import Settings

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TABLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")


class Warehouse(Protocol):
    database: str

    def command(self, sql: str) -> None: ...

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None: ...

    def close(self) -> None: ...


# --- pure helpers (unit-tested) ---------------------------------------------------------------------

def check_identifier(name: str) -> str:
    """A database name is spliced into SQL, so it must be a plain identifier."""
    if not _IDENT.match(name):
        raise ConfigError(f"not a valid ClickHouse identifier: {name[:64]!r}")
    return name


# Security and configuration tables (key hashes, who did what, webhook targets and e-mail addresses, also in each
# delivery attempt) live in a database of their own that analysts (POST /query, the `analyst` ClickHouse user) are
# never given: migration 0011.
ADMIN_TABLES = frozenset({"api_keys", "audit_log", "subscriptions", "alert_deliveries"})


def admin_database(database: str) -> str:
    return f"{check_identifier(database)}_admin"


def table_in(database: str, table: str) -> str:
    """`db.t`, or `db_admin.t` for an admin table: the one place that says where a table lives."""
    return f"{admin_database(database) if table in ADMIN_TABLES else check_identifier(database)}.{table}"


def qualify(table: str, database: str) -> str:
    """`t` → `db.t`; `db.t` stays. Only plain identifiers pass: a table name is spliced into SQL."""
    if not _TABLE.match(table):
        raise WarehouseError(f"not a valid table name: {table[:64]!r}")
    return table if "." in table else f"{database}.{table}"


_QUOTE_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
_TSV_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def quote_string(value: str) -> str:
    """A ClickHouse string literal: every quote and backslash escaped, so the value cannot end the literal."""
    return "'" + "".join(_QUOTE_ESCAPES.get(ch, ch) for ch in value) + "'"


def _dt_text(value: datetime | date) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    return value.isoformat()


def literal(value: Any) -> str:
    """A Python value as a ClickHouse SQL literal (strings quoted and escaped; lists as arrays)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, datetime | date):
        return quote_string(_dt_text(value))
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise WarehouseError(f"unsupported query parameter type {type(value).__name__}")


def param_text(value: Any) -> str:
    """A parameter value in the text form ClickHouse parses for `{name:Type}` (as HTTP `param_x=` carries it).

    Scalars are in TSV-escaped form (the server unescapes, then parses as the placeholder's type);
    arrays, maps and tuples are in quoted-literal form. Either way the value is data, never SQL.
    """
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, str):
        return "".join(_TSV_ESCAPES.get(ch, ch) for ch in value)
    if isinstance(value, datetime | date):
        return _dt_text(value)
    if isinstance(value, int | float):
        return literal(value)
    return literal(value)


def _rows_from_arrow(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    maps = [f.name for f in table.schema if pa.types.is_map(f.type)]
    if maps:  # Arrow gives a Map as [(k, v)]; clickhouse-connect gives a dict: answer alike on both
        for row in rows:
            for name in maps:
                if row[name] is not None:
                    row[name] = dict(row[name])
    return rows


def insert_settings(dedup_token: str | None) -> dict[str, Any]:
    """Settings of every insert. optimize_on_insert=0: a ReplacingMergeTree otherwise collapses each inserted
    block on the way in, which measured 5x slower here (500k readings: 1.2 s vs 0.23 s); readers collapse
    by identity (FINAL, or GROUP BY the key) anyway, and merges do it in the background."""
    settings: dict[str, Any] = {"optimize_on_insert": 0}
    if dedup_token is not None:
        settings["insert_deduplication_token"] = dedup_token
    return settings


def _settings_clause(dedup_token: str | None) -> str:
    return " SETTINGS " + ", ".join(f"{k} = {literal(v)}" for k, v in insert_settings(dedup_token).items())


# --- embedded chDB ----------------------------------------------------------------------------------

def embedded_engine() -> Any:
    """The chdb module, imported on first use (server-mode processes never load it; the production image
    does not even install it: it comes with the `embedded` extra)."""
    try:
        import chdb
    except ImportError as exc:
        raise ConfigError("CLICKHOUSE_URL is chdb://… but chDB is not installed: install the embedded extra "
                          "(pip install 'controlroom[embedded]'; `make up` does) or point CLICKHOUSE_URL at a "
                          "ClickHouse server") from exc
    return chdb

# chDB takes a ClickHouse server's cache sizes, made for a machine of its own (mark and primary-index caches 5 GB
# each, 5 GB for skip-index marks, 100 MB of query-condition cache). Embedded, they would share the API's memory:
# bounded here, far above what the warehouse of one country needs (the 10M-row API bench reads through a few MB).
CHDB_SERVER_SETTINGS = {
    "mark_cache_size": 64 << 20,
    "primary_index_cache_size": 64 << 20,
    "index_mark_cache_size": 16 << 20,
    "query_condition_cache_size": 16 << 20,
    "compiled_expression_cache_size": 16 << 20,
}


def chdb_session_path(path: str) -> str:
    """The session's connection string: the path, and the server settings as its startup arguments."""
    return path + "?" + "&".join(f"{k}={v}" for k, v in CHDB_SERVER_SETTINGS.items())


class ChdbWarehouse:
    """chDB session on a path. One lock around every call: the API calls from many threads."""

    def __init__(self, path: str, database: str) -> None:
        session = embedded_engine().session

        self.database = check_identifier(database)
        self.path = path
        self._lock = threading.Lock()
        Path(path).mkdir(parents=True, exist_ok=True)
        try:
            self._session: Any = session.Session(chdb_session_path(path))
        except Exception as exc:  # chDB raises plain RuntimeError; the path lock is the usual cause
            raise WarehouseError("cannot open the chDB warehouse (one process per path, one path per process): "
                                 f"{exc}") from exc

    def _run(self, sql: str, fmt: str = "Arrow", params: dict[str, Any] | None = None) -> Any:
        if self._session is None:
            raise WarehouseError("warehouse is closed")
        try:
            if params:
                return self._session.query(sql, fmt, params={k: param_text(v) for k, v in params.items()})
            return self._session.query(sql, fmt)
        except WarehouseError:
            raise
        except Exception as exc:
            self._drain()
            raise WarehouseError(f"chDB: {exc}") from exc

    def _drain(self) -> None:
        """chDB keeps a failed query's partial output and hands it to the next query on the session:
        one throwaway query takes it, so the next real query gets only its own result."""
        with contextlib.suppress(Exception):  # this query exists only to be discarded
            self._session.query("SELECT 1", "CSV")

    def command(self, sql: str) -> None:
        with self._lock:
            self._run(sql, "CSV")

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            res = self._run(sql, "Arrow", params)
            try:
                table = embedded_engine().to_arrowTable(res)
            except Exception as exc:
                raise WarehouseError(f"chDB: cannot read the result: {exc}") from exc
        return _rows_from_arrow(table)

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        target = qualify(table, self.database)
        cols = ", ".join(f"`{c}`" for c in data.column_names)  # by name: the Arrow column order need not match
        # chDB's Python() table function finds the object by name in the calling frames: a local here.
        cr_arrow_batch = data  # noqa: F841  # read by chDB through Python(cr_arrow_batch)
        sql = (f"INSERT INTO {target} ({cols}){_settings_clause(dedup_token)} "
               f"SELECT {cols} FROM Python(cr_arrow_batch)")
        with self._lock:
            self._run(sql, "CSV")

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                try:
                    self._session.close()
                finally:
                    self._session = None


def release_engine_memory(warehouse: Warehouse) -> None:
    """Embedded: chDB's jemalloc gives its freed pages back (it kept 100+ MB of them between merges). A server's
    memory is the server's: nothing to do. Failures are ignored: this only returns memory."""
    if isinstance(warehouse, ChdbWarehouse):
        with contextlib.suppress(WarehouseError):
            warehouse.command("SYSTEM JEMALLOC PURGE")


# --- ClickHouse server ------------------------------------------------------------------------------

class ServerWarehouse:
    """ClickHouse server over HTTP(S) with clickhouse-connect, shared by every thread of the process.

    No ClickHouse session: clickhouse-connect's client otherwise makes up one session id and sends it with every
    request, and ClickHouse runs one query at a time per session — a second concurrent query fails with "Session is
    locked by a concurrent client" (SESSION_IS_LOCKED). The API runs its queries (/query, /overview, /series, the
    wall) from many threads at once, so each request stands alone: nothing here uses session state (no SET, no
    temporary table; settings go with each query). Without a session the client is thread-safe (each query keeps
    its state in its own context; HTTP connections come from a pool), so calls run concurrently, unlocked."""

    def __init__(self, url: str, default_database: str) -> None:
        import clickhouse_connect

        parts = urlsplit(url)
        db_from_path = parts.path.strip("/")
        self.database = check_identifier(unquote(db_from_path) if db_from_path else default_database)
        secure = parts.scheme == "https"
        self._secrets = [x for x in (parts.password, unquote(parts.password or "")) if x]
        try:
            self._client: Any = clickhouse_connect.get_client(
                host=parts.hostname or "localhost",
                port=parts.port or (8443 if secure else 8123),
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                secure=secure,
                # the database may not exist before the first migration: connect to `default`
                database="default",
                connect_timeout=5,
                send_receive_timeout=60,
                autogenerate_session_id=False,  # no shared session: concurrent queries (see the class)
            )
        except Exception as exc:
            raise self._error(f"cannot connect to ClickHouse at {parts.hostname}:{parts.port}", exc) from exc

    def _error(self, what: str, exc: Exception) -> WarehouseError:
        """The driver's message may quote the URL or its credentials: never pass the password on."""
        text = str(exc)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return WarehouseError(f"{what}: {text[:2000]}")

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as exc:
            raise self._error("ClickHouse", exc) from exc

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            result = self._client.query(sql, parameters=params or None)
            return list(result.named_results())
        except Exception as exc:
            raise self._error("ClickHouse", exc) from exc

    def raw_query(self, sql: str, settings: dict[str, Any], fmt: str, database: str | None = None) -> bytes:
        """The server's own output in `fmt`, with `settings` for this query only (api/readonly_sql: /query);
        `database`: where unqualified table names resolve for this query (the client's own otherwise)."""
        try:
            if database is not None:  # a transport parameter of ClickHouse's HTTP interface, per request
                return bytes(self._client.raw_query(sql, settings={**settings, "database": check_identifier(database)},
                                                    fmt=fmt, use_database=False))
            return bytes(self._client.raw_query(sql, settings=settings, fmt=fmt))
        except Exception as exc:
            raise self._error("ClickHouse", exc) from exc

    def insert_arrow(self, table: str, data: pa.Table, dedup_token: str | None = None) -> None:
        target = qualify(table, self.database)
        database, name = target.split(".", 1)
        settings = insert_settings(dedup_token)
        try:
            self._client.insert_arrow(name, data, database=database, settings=settings)
        except Exception as exc:
            raise self._error(f"ClickHouse insert into {target}", exc) from exc

    def close(self) -> None:
        self._client.close()

    @property
    def session_id(self) -> str | None:
        """The ClickHouse session every request of this client would join: None, always (see the class)."""
        value = self._client.get_client_setting("session_id")
        return str(value) if value else None


def chdb_path(url: str) -> str:
    """chdb:///abs/path → /abs/path; chdb://relative/path → relative/path."""
    rest = url[len("chdb://"):]
    if not rest:
        raise ConfigError("CLICKHOUSE_URL chdb:// needs a path, e.g. chdb://./data/warehouse")
    return rest


def open_exclusive(settings: Settings, in_use: str) -> Warehouse:
    """open_warehouse for a command line tool; `in_use` says what to do instead while an API owns a chDB path."""
    try:
        return open_warehouse(settings)
    except WarehouseError as exc:
        text = str(exc).lower()
        # chDB says "Cannot lock file …/status" on stderr only; its exception then reads "Error initializing
        # EmbeddedServer", which ChdbWarehouse reports as "cannot open the chDB warehouse"
        if "lock" in text or "already" in text or "cannot open the chdb warehouse" in text:
            raise ConfigError(f"the warehouse is in use, most likely by a running API (make up): {in_use}") from exc
        raise


def open_warehouse(settings: Settings) -> Warehouse:
    url = settings.clickhouse_url.get_secret_value()
    if url.startswith("chdb://"):
        return ChdbWarehouse(chdb_path(url), settings.clickhouse_database)
    if url.startswith(("http://", "https://")):
        return ServerWarehouse(url, settings.clickhouse_database)
    raise ConfigError("CLICKHOUSE_URL must start with chdb://, http:// or https://")
