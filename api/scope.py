"""Province scope on the read side, enforced by ClickHouse, not by rewriting SQL text.

A key for provinces 01 and 79 reads the database `controlroom_p_01_79`: one view per table of `controlroom` that has
a `province` column, `SELECT * FROM controlroom.<t> [FINAL] WHERE province IN ('01', '79', '00')` (00: national
figures, no province's), the reference tables (categories, feeds, provinces) as they are, and tables without a
province (dead letters, deliveries, notes) empty. Every read of such a key names that database instead of
`controlroom`: the API's own queries (/series, /alerts, /incidents, /overview, the wall) are built with it, and its
/query runs with it as the default database and may read nothing else (api/readonly_sql.py: ClickHouse's analyzer
names every table a query reads; a view is named, not expanded, so `controlroom.readings` itself is refused). The
filter is in the view, which the engine applies under whatever query an analyst writes (joins, subqueries).

Why views and not ROW POLICY: chDB runs no access control (CREATE USER / CREATE ROW POLICY are refused there), custom
`SQL_*` settings need server configuration chDB does not take, and parameterized views would need the analyst's SQL
rewritten to pass the provinces. Plain views work alike on chDB and a ClickHouse server.

National keys (no provinces) read `controlroom` itself. Each process (re)creates a scope's views on its first use
(CREATE OR REPLACE: a table added by a later migration is covered after the next start).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable

from controlroom.catalog import NATIONAL, Catalog
from controlroom.security import Principal
from controlroom.warehouse import Warehouse, check_identifier

REFERENCE_TABLES = ("categories", "feeds", "provinces", "indicators")  # the catalogs: no province's data, shown whole
_CODE = re.compile(r"^\d{2}$")
_SKIP = re.compile(r"__refresh_|^schema_migrations$")  # staging tables of a reference refresh, bookkeeping


def scope_database(database: str, provinces: Iterable[str]) -> str:
    """Pure: the database a key for `provinces` reads; the project's own for a national key (no provinces)."""
    codes = sorted(set(provinces))
    if not codes:
        return check_identifier(database)
    bad = [c for c in codes if not _CODE.match(c)]
    if bad:
        raise ValueError(f"not province codes: {bad}")
    return f"{check_identifier(database)}_p_{'_'.join(codes)}"


def view_statements(database: str, provinces: Iterable[str], tables: dict[str, tuple[bool, str]]) -> list[str]:
    """Pure: the DDL of a scope database. `tables`: name → (has a `province` column, engine). A table with no province
    (dead letters, deliveries, notes…) is an empty view, so every query built for the project's database runs on a
    scope's too; the reference tables are whole. A view over a ReplacingMergeTree
    (or any other merging engine) reads it FINAL: ClickHouse ignores `FINAL` written after a view's name, so the
    view itself must, or a scoped reader would see rows not yet merged away that a national one does not."""
    db = check_identifier(database)
    codes = sorted(set(provinces))
    scoped = scope_database(db, codes)
    # checked two-digit codes only (scope_database); national figures (00) are no province's: every key sees them
    listed = ", ".join(f"'{c}'" for c in [*codes, NATIONAL])
    out = [f"CREATE DATABASE IF NOT EXISTS {scoped}"]
    for name, (has_province, engine) in sorted(tables.items()):
        if _SKIP.search(name):
            continue
        final = " FINAL" if engine.endswith("MergeTree") and engine != "MergeTree" else ""
        # no province column: empty (its rows may be any province's), unless it is the catalog
        where = f" WHERE province IN ({listed})" if has_province else "" if name in REFERENCE_TABLES else " WHERE 0"
        out.append(f"CREATE OR REPLACE VIEW {scoped}.{check_identifier(name)} AS "  # noqa: S608 - identifiers
                   f"SELECT * FROM {db}.{name}{final}{where}")
    return out


def scoped_catalog(catalog: Catalog, provinces: Iterable[str]) -> Catalog:
    """Pure: the catalog a scoped key's /overview and wall count against: its provinces (national feeds stay: their
    figures, province 00, are every key's). National keys: the catalog itself."""
    codes = set(provinces)
    if not codes:
        return catalog
    return dataclasses.replace(catalog, provinces={c: p for c, p in catalog.provinces.items() if c in codes})


def provinces_of(principal: Principal | None) -> frozenset[str]:
    return principal.provinces if principal is not None else frozenset()


class Scopes:
    """The scope databases of this process, made on first use."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.wh = warehouse
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def _tables(self) -> dict[str, tuple[bool, str]]:
        rows = self.wh.query(
            "SELECT t.name AS name, any(t.engine) AS engine, countIf(c.name = 'province') > 0 AS has_province "
            "FROM system.tables AS t LEFT JOIN system.columns AS c ON c.database = t.database AND c.table = t.name "
            "WHERE t.database = {db:String} AND t.engine != 'MaterializedView' GROUP BY t.name",
            {"db": self.wh.database})
        return {str(r["name"]): (bool(r["has_province"]), str(r["engine"])) for r in rows}

    def database_for(self, principal: Principal | None) -> str:
        """Blocking (call from a worker thread): the database `principal` reads, its views made if need be."""
        provinces = provinces_of(principal)
        name = scope_database(self.wh.database, provinces)
        if not provinces:
            return name
        with self._lock:
            if name not in self._ready:
                for statement in view_statements(self.wh.database, provinces, self._tables()):
                    self.wh.command(statement)
                self._ready.add(name)
        return name
