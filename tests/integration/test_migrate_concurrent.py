"""Migrations run twice at once (the compose `migrate` job and a `keys create`, both call migrate()) end in the
same schema as one run, and a reader never sees an empty reference table while they refresh it. On chDB: one
process per path, so the two runs are two threads on one warehouse, their statements interleaved one by one
(the warehouse's lock is per statement, not per migration)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from controlroom.catalog import Catalog
from controlroom.warehouse import ADMIN_TABLES, Warehouse, admin_database, table_in
from sinks.migrate import STAGING, drop_stale_staging, migrate, migration_files, refresh_reference

pytestmark = pytest.mark.integration


def schema(wh: Warehouse) -> dict[str, str]:
    """Every table of the database and of its admin database, and its CREATE statement (codecs, TTLs and settings
    included)."""
    rows = wh.query("SELECT database || '.' || name AS name, create_table_query AS ddl FROM system.tables "
                    "WHERE database IN ({db:String}, {admin:String})",
                    {"db": wh.database, "admin": admin_database(wh.database)})
    return {str(r["name"]): str(r["ddl"]) for r in rows}


def in_threads(*calls: Any) -> list[Any]:
    """Run each call in its own thread, all started together; return their results (or raise the first error)."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:  # handed to the test below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return results


def test_two_migrations_at_once_end_as_one(warehouse: Warehouse, catalog: Catalog, make_settings) -> None:  # type: ignore[no-untyped-def]
    every = [v for v, _ in migration_files()]
    first, second = in_threads(lambda: migrate(warehouse, catalog), lambda: migrate(warehouse, catalog))
    # each run applied what it found pending; together, every version, and both may have applied one
    assert sorted(set(first) | set(second)) == every
    concurrent = schema(warehouse)
    assert not [t for t in concurrent if STAGING in t]  # no staging table left behind
    assert migrate(warehouse, catalog) == []
    versions = warehouse.query("SELECT version FROM controlroom.schema_migrations FINAL ORDER BY version")
    assert [r["version"] for r in versions] == every
    counts = warehouse.query("SELECT (SELECT count() FROM controlroom.feeds) AS feeds, "
                             "(SELECT count() FROM controlroom.provinces) AS provinces")
    assert counts == [{"feeds": len(catalog.feeds), "provinces": len(catalog.provinces)}]  # not twice
    # the same schema as a single run on an empty warehouse (every DDL compared, codecs and TTLs included)
    warehouse.command("DROP DATABASE controlroom SYNC")
    warehouse.command("DROP DATABASE controlroom_admin SYNC")
    migrate(warehouse, catalog)
    assert schema(warehouse) == concurrent


def test_reference_tables_are_never_empty_during_a_refresh(warehouse: Warehouse, catalog: Catalog) -> None:
    migrate(warehouse, catalog)
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(int(warehouse.query("SELECT count() AS n FROM controlroom.provinces")[0]["n"]))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(10):  # two refreshes at once, ten times, while the reader counts between their statements
            in_threads(lambda: refresh_reference(warehouse, catalog), lambda: refresh_reference(warehouse, catalog))
    finally:
        stop.set()
        thread.join(60)
    assert len(seen) > 20  # the reader really ran among the refreshes' statements
    assert set(seen) == {len(catalog.provinces)}  # never empty, never doubled


def test_a_dead_refresh_leaves_a_staging_table_that_a_later_run_drops(warehouse: Warehouse,
                                                                     catalog: Catalog) -> None:
    migrate(warehouse, catalog)
    # what a refresh killed between its CREATE and its DROP leaves behind
    left = f"provinces{STAGING}deadbeef0000"
    warehouse.command(f"CREATE TABLE controlroom.{left} AS controlroom.provinces")
    refresh_reference(warehouse, catalog)
    assert f"controlroom.{left}" in schema(warehouse)  # too young: it may be a refresh running now
    time.sleep(1.1)  # metadata times have a resolution of one second
    drop_stale_staging(warehouse, older_than_s=0)
    assert not [t for t in schema(warehouse) if STAGING in t]
    assert int(warehouse.query("SELECT count() AS n FROM controlroom.provinces")[0]["n"]) == len(catalog.provinces)


def test_0011_moves_the_admin_tables_of_an_older_warehouse_with_their_rows(warehouse: Warehouse,
                                                                            catalog: Catalog) -> None:
    migrate(warehouse, catalog)
    # an older warehouse: its 0002/0003 created the tables in the project's database, and 0011 is pending
    for table in ADMIN_TABLES:
        warehouse.command(f"RENAME TABLE {table_in(warehouse.database, table)} TO controlroom.{table}")
    warehouse.command("INSERT INTO controlroom.audit_log (at, action, target) VALUES (now64(3, 'UTC'), 'x', 'kept')")
    warehouse.command("INSERT INTO controlroom.subscriptions (subscription_id, version, doc) VALUES ('s', 1, '{}')")
    warehouse.command("INSERT INTO controlroom.alert_deliveries (delivery_id, alert_id, target, status, attempted_at) "
                      "VALUES ('d1', 'a1', 'https://hooks.example/secret-token', 'delivered', now64(3, 'UTC'))")
    warehouse.command("DELETE FROM controlroom.schema_migrations WHERE version = '0011'")
    assert migrate(warehouse, catalog) == ["0011"]
    left = warehouse.query("SELECT name FROM system.tables WHERE database = 'controlroom' "
                           "AND has({t:Array(String)}, name)", {"t": sorted(ADMIN_TABLES)})
    assert left == []
    assert warehouse.query("SELECT target FROM controlroom_admin.audit_log") == [{"target": "kept"}]
    assert warehouse.query("SELECT subscription_id FROM controlroom_admin.subscriptions") == [{"subscription_id": "s"}]
    # what analysts see of a delivery: the attempt, not its target (applied twice: still one row)
    warehouse.command("DELETE FROM controlroom.schema_migrations WHERE version = '0011'")
    assert migrate(warehouse, catalog) == ["0011"]
    assert warehouse.query("SELECT delivery_id, status FROM controlroom.delivery_attempts") == [
        {"delivery_id": "d1", "status": "delivered"}]
    assert "target" not in {r["name"] for r in warehouse.query(
        "SELECT name FROM system.columns WHERE database = 'controlroom' AND table = 'delivery_attempts'")}
