"""Versioned SQL migrations (sinks/migrations/NNNN_name.sql), applied once each, in order.

Every statement is idempotent (`IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`, MODIFY …), so a migration cut
short (crash between two statements) is simply applied again, and two `controlroom migrate` running at once
(the compose job and a `keys create`, say) apply the same statements in some interleaving and end in the same
schema: both record the version, and the bookkeeping table (ReplacingMergeTree on version) keeps one row.
Only the database and the bookkeeping table are created here: they must exist before we can read which
versions are applied.
"""

from __future__ import annotations

import re
import uuid
from importlib import resources

import pyarrow as pa

from controlroom.catalog import Catalog
from controlroom.errors import CatalogError
from controlroom.indicators import default_indicators
from controlroom.logs import get_logger
from controlroom.warehouse import Warehouse, admin_database, check_identifier

log = get_logger("migrate")

_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) sorted by version; a file not named NNNN_name.sql is an error, not skipped."""
    folder = resources.files("sinks") / "migrations"
    out: list[tuple[str, str]] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _NAME.match(entry.name)
        if m is None:
            raise ValueError(f"migration file {entry.name!r} must be named NNNN_name.sql")
        out.append((m.group(1), entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _ in out]
    if len(set(versions)) != len(versions):
        raise ValueError(f"two migration files share a version: {versions}")
    return out


def split_statements(sql: str) -> list[str]:
    """Statements end with ';' at a line end; '--' comment lines are dropped."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [s.strip().rstrip(";").strip() for s in re.split(r";[ \t]*(?:\n|$)", body) if s.strip().rstrip(";").strip()]


def render(sql: str, db: str) -> str:
    """`{db}`: the project's database; `{admin}`: its security and configuration database."""
    return sql.replace("{admin}", admin_database(db)).replace("{db}", check_identifier(db))


def migrate(warehouse: Warehouse, catalog: Catalog) -> list[str]:
    """Apply pending migrations; return the versions applied now. Then refresh the reference tables."""
    db = check_identifier(warehouse.database)
    warehouse.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    warehouse.command(f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
                      f"(version String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')) "
                      f"ENGINE = ReplacingMergeTree ORDER BY version")
    done = {str(r["version"]) for r in warehouse.query(f"SELECT version FROM {db}.schema_migrations")}
    applied: list[str] = []
    for version, sql in migration_files():
        if version in done:
            continue
        for statement in split_statements(render(sql, db)):
            warehouse.command(statement)
        # recorded only after every statement succeeded: a failed migration is retried next start
        warehouse.insert_arrow(f"{db}.schema_migrations", pa.table({"version": [version]}))
        applied.append(version)
        log.info("migration applied", version=version)
    refresh_reference(warehouse, catalog)
    return applied


def reference_tables(catalog: Catalog) -> dict[str, pa.Table]:
    """Pure: the catalog as Arrow tables for categories, feeds, provinces and communes."""
    cats = list(catalog.categories.values())
    feeds = list(catalog.feeds.values())
    provs = list(catalog.provinces.values())
    communes = list(catalog.communes.values())
    return {
        "categories": pa.table({"id": [c.id for c in cats], "name_vi": [c.name_vi for c in cats],
                                "name_en": [c.name_en for c in cats]}),
        "feeds": pa.table({
            "id": [f.id for f in feeds], "category": [f.category for f in feeds],
            "name_vi": [f.name_vi for f in feeds], "name_en": [f.name_en for f in feeds],
            "source": [f.source for f in feeds], "unit": [f.unit for f in feeds], "kind": [f.kind for f in feeds],
            "scope": [f.scope for f in feeds],
            "cadence_s": pa.array([f.cadence_s for f in feeds], pa.float64()),
            "valid_min": pa.array([f.valid_min for f in feeds], pa.float64()),
            "valid_max": pa.array([f.valid_max for f in feeds], pa.float64()),
            "dims": pa.array([[(k, list(v)) for k, v in f.dims.items()] for f in feeds],
                             pa.map_(pa.string(), pa.list_(pa.string()))),
            "communes": pa.array([int(f.communes) for f in feeds], pa.uint8()),
        }),
        "provinces": pa.table({
            "code": [p.code for p in provs], "name_vi": [p.name_vi for p in provs],
            "name_en": [p.name_en for p in provs], "kind": [p.kind for p in provs],
            "lat": pa.array([p.lat for p in provs], pa.float64()),
            "lon": pa.array([p.lon for p in provs], pa.float64()),
            "legacy_codes": pa.array([list(p.legacy_codes) for p in provs], pa.list_(pa.string())),
        }),
        "communes": pa.table({"code": [c.code for c in communes], "name": [c.name for c in communes],
                              "province": [c.province for c in communes], "kind": [c.kind for c in communes]}),
        "indicators": indicator_table(catalog),
        **contract_tables(catalog),
    }


def contract_tables(catalog: Catalog) -> dict[str, pa.Table]:
    """The feed contracts (agencies.yaml, `contracts:`): one row each, and one row per series each must cover."""
    cs = list(catalog.contracts.values())
    return {
        "contracts": pa.table({
            "agency": [c.agency for c in cs], "feed": [c.feed for c in cs],
            "province": [catalog.registry.bodies[c.agency].province for c in cs],
            "cadence_s": pa.array([c.cadence_s for c in cs], pa.float64()),
            "series": pa.array([len(c.series) for c in cs], pa.uint32()),
            "per_hour_min": pa.array([c.per_hour_min for c in cs], pa.float64()),
            "per_hour_max": pa.array([c.per_hour_max for c in cs], pa.float64()),
            "timeliness_pct": pa.array([c.timeliness_pct for c in cs], pa.float64())}),
        "contract_series": pa.table({
            "agency": [c.agency for c in cs for _ in c.series], "feed": [c.feed for c in cs for _ in c.series],
            "province": [p for c in cs for p, _ in c.series], "dims_key": [k for c in cs for _, k in c.series]}),
    }


def indicator_table(catalog: Catalog) -> pa.Table:
    """The indicator catalogue (those whose feed this catalog has: a test's smaller catalog keeps the others out)."""
    inds = [i for i in default_indicators().values() if i.feed is None or i.feed in catalog.feeds]
    if any(len(i.dims) > 1 for i in inds):  # the table has one dimension per indicator; the catalogue has no more
        raise CatalogError("an indicator pins more than one dimension: the indicators table needs a Map")
    pinned = [next(iter(i.dims.items()), ("", "")) for i in inds]
    return pa.table({
        "id": [i.id for i in inds], "category": [i.category for i in inds], "name_vi": [i.name_vi for i in inds],
        "name_en": [i.name_en for i in inds], "unit": [i.unit for i in inds],
        "periodicity": [i.periodicity for i in inds], "aggregation": [i.aggregation for i in inds],
        "owner": [i.owner for i in inds], "levels": pa.array([list(i.levels) for i in inds], pa.list_(pa.string())),
        "source": [i.source for i in inds], "feed": [i.feed or "" for i in inds],
        "dim_key": [k for k, _ in pinned], "dim_value": [v for _, v in pinned],
        "numerator": [i.numerator or "" for i in inds], "denominator": [i.denominator or "" for i in inds],
        "scale": pa.array([i.scale for i in inds], pa.float64()), "report": [i.report or "" for i in inds]})


STAGING = "__refresh_"  # <reference table>__refresh_<run id>: a refresh's table being filled
STALE_STAGING_S = 3600  # a staging table this old was left by a refresh that died: dropped by the next one


def refresh_reference(warehouse: Warehouse, catalog: Catalog) -> None:
    """Reference tables mirror the catalog files: replaced whole at every start (a retired feed disappears).

    Never empty on the way: each is filled under a staging name of this run's own (two runs at once fill two),
    then swapped in by EXCHANGE TABLES, one atomic rename on an Atomic database (ClickHouse's default engine,
    and chDB's). A reader sees the old rows or the new ones, and two runs at once each swap in a full table."""
    db = check_identifier(warehouse.database)
    drop_stale_staging(warehouse)
    run = uuid.uuid4().hex[:12]
    for name, table in reference_tables(catalog).items():
        staging = f"{db}.{name}{STAGING}{run}"
        warehouse.command(f"CREATE TABLE {staging} AS {db}.{name}")
        try:
            warehouse.insert_arrow(staging, table)
            warehouse.command(f"EXCHANGE TABLES {db}.{name} AND {staging}")
        finally:  # after the exchange it holds the old rows
            warehouse.command(f"DROP TABLE IF EXISTS {staging}")


def drop_stale_staging(warehouse: Warehouse, older_than_s: int = STALE_STAGING_S) -> None:
    """Drop the staging tables of refreshes that died (a kill between CREATE and DROP); a younger one may be a
    refresh running now, so it is left alone."""
    db = check_identifier(warehouse.database)
    rows = warehouse.query(
        "SELECT name FROM system.tables WHERE database = {db:String} AND position(name, {marker:String}) > 0 "
        "AND metadata_modification_time < now() - {age:UInt32}",
        {"db": db, "marker": STAGING, "age": older_than_s})
    for row in rows:
        warehouse.command(f"DROP TABLE IF EXISTS {db}.{check_identifier(str(row['name']))}")
