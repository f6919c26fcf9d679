"""The `Warehouse` contract (controlroom/warehouse.py), the same tests on both backends: embedded chDB (`…[chdb]`)
and a ClickHouse server through clickhouse-connect (`…[clickhouse_server]`).

The server case runs where CLICKHOUSE_TEST_URL=http(s)://user:pass@host:8123 is set: a throw-away database is
created there and dropped. Without it the server case is skipped and says so (no ClickHouse server can run on the
machines that build this project: Debian's is 18.16, too old for clickhouse-connect, and none is packaged on the
registries they reach); when it is set but nothing answers there, it is skipped too, or with CI=true it fails.

What every backend must do: apply every migration in sinks/migrations once, in order; refresh the reference tables;
take query parameters as data, never SQL; insert Arrow batches with a deduplication token (the same batch twice is
stored once); answer Maps as dicts and times as UTC; turn an engine error into WarehouseError and keep answering;
answer concurrent calls from many threads, the API's read-only /query path included (on the server: no shared
ClickHouse session, see ServerWarehouse; tests/unit/test_server_sessions.py checks that part without a server).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from api.readonly_sql import AnalystQueries, QueryRefused
from controlroom.catalog import Catalog
from controlroom.errors import WarehouseError
from controlroom.settings import Settings
from controlroom.warehouse import ChdbWarehouse, ServerWarehouse, Warehouse, open_warehouse
from sinks.migrate import migrate
from sinks.rows import convert, dedup_token
from tests.integration.pipeline import sent_record

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIGRATIONS = Path(__file__).resolve().parents[2] / "sinks" / "migrations"
NASTY = ["it's", "a\\' OR 1=1 --", "x\ny\tz\r", "\\", "'; DROP TABLE controlroom.feeds; --", "{id:String}", "ữ"]


@dataclass
class Backend:
    wh: Warehouse
    settings: Settings  # what a process of this backend would be started with (the /query path reads it)

    def q(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.wh.query(sql.replace("DB.", f"{self.wh.database}."), params)

    def count(self, table: str, final: bool = True) -> int:
        return int(self.q(f"SELECT count() AS n FROM DB.{table}{' FINAL' if final else ''}")[0]["n"])


def server_settings(make_settings) -> Settings:  # type: ignore[no-untyped-def]
    url = os.environ.get("CLICKHOUSE_TEST_URL", "")
    if not url:
        pytest.skip("CLICKHOUSE_TEST_URL is not set: no ClickHouse server to run the contract against "
                    "(e.g. CLICKHOUSE_TEST_URL=http://default:@127.0.0.1:8123)")
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))  # our own throw-away database, not the URL's
    settings: Settings = make_settings(clickhouse_url=base, clickhouse_database=f"crtest_{uuid.uuid4().hex[:10]}")
    return settings


@pytest.fixture(params=["chdb", "clickhouse_server"])
def backend(request: pytest.FixtureRequest, make_settings) -> Iterator[Backend]:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings() if request.param == "chdb" else server_settings(make_settings)
    try:
        wh = open_warehouse(settings)
        assert wh.query("SELECT 1 AS one") == [{"one": 1}]
    except WarehouseError as exc:
        if request.param == "chdb":
            raise
        why = f"CLICKHOUSE_TEST_URL is set, but the ClickHouse server there is unreachable or refused us: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    assert isinstance(wh, ChdbWarehouse if request.param == "chdb" else ServerWarehouse)
    try:
        yield Backend(wh, settings)
    finally:
        if isinstance(wh, ServerWarehouse):
            wh.command(f"DROP DATABASE IF EXISTS {wh.database}")
        wh.close()


def utc(value: datetime) -> datetime:
    """A DateTime64(3, 'UTC') value as one aware datetime, however the driver hands it over."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def test_every_migration_is_applied_once_in_order_and_reference_tables_are_refreshed(
        backend: Backend, catalog: Catalog) -> None:
    files = sorted(p.name for p in MIGRATIONS.glob("*.sql"))  # the folder itself, whatever it holds today
    every = [name[:4] for name in files]
    assert len(every) >= 8 and all(re.fullmatch(r"\d{4}", v) for v in every), files
    assert migrate(backend.wh, catalog) == every
    assert migrate(backend.wh, catalog) == []  # a second run applies nothing
    assert [r["version"] for r in backend.q("SELECT version FROM DB.schema_migrations FINAL ORDER BY version")] \
        == every
    tables = {r["name"] for r in backend.q("SELECT name FROM system.tables WHERE database = {db:String}",
                                           {"db": backend.wh.database})}
    assert {"readings", "agg_1m", "dead_letters", "late_readings", "categories", "feeds", "provinces",
            "schema_migrations"} <= tables
    # refreshed, not appended to, on every run
    assert backend.count("feeds", final=False) == 25
    assert backend.count("provinces", final=False) == 34
    assert backend.count("categories", final=False) == len(catalog.categories)
    wl = backend.q("SELECT * FROM DB.feeds WHERE id = {id:String}", {"id": "water_level"})
    assert wl == [{"id": "water_level", "category": "regional_local", "name_vi": "Mực nước sông",
                   "name_en": "River water level", "source": "hydrological stations", "unit": "cm", "kind": "gauge",
                   "scope": "provincial", "cadence_s": 60.0, "valid_min": -500.0, "valid_max": 3000.0,
                   "dims": {"station": ["s1", "s2"]}, "communes": 1}]
    assert backend.q("SELECT legacy_codes FROM DB.provinces WHERE code = '08'") == [{"legacy_codes": ["02", "08"]}]
    assert backend.count("communes", final=False) == 3321


def test_query_parameters_are_data_never_sql(backend: Backend, catalog: Catalog) -> None:
    migrate(backend.wh, catalog)
    for value in NASTY:
        assert backend.q("SELECT {v:String} AS v", {"v": value}) == [{"v": value}]
        assert backend.q("SELECT count() AS n FROM DB.feeds WHERE id = {v:String}", {"v": value}) == [{"n": 0}]
    assert backend.q("SELECT {v:Array(String)} AS v", {"v": NASTY}) == [{"v": NASTY}]
    assert backend.q("SELECT count() AS n FROM DB.feeds WHERE has({ids:Array(String)}, id)",
                     {"ids": ["gold_price", "' OR 1=1 --"]}) == [{"n": 1}]
    assert backend.count("feeds", final=False) == 25  # nothing was dropped
    got = backend.q("SELECT {t:DateTime64(3, 'UTC')} AS t, {n:Int64} AS n", {"t": dt(T0 + 123), "n": -5})
    assert [(utc(r["t"]), r["n"]) for r in got] == [(dt(T0 + 123), -5)]


def test_arrow_inserts_deduplicate_by_token_and_read_back_alike(backend: Backend, catalog: Catalog) -> None:
    migrate(backend.wh, catalog)
    recs = [sent_record("feeds.hotline_calls", 0, i, T0, orjson.dumps({
        "event_id": f"h{i}", "feed": "hotline_calls", "province": "02", "ts": T0 + i, "value": i,
        "dims": {"line": "113"},
    })) for i in range(100)]
    table = convert(recs, catalog, max_future_ms=300_000, ingested_ms=T0).tables["readings"]
    token = dedup_token("readings", recs)
    backend.wh.insert_arrow("readings", table, token)
    backend.wh.insert_arrow("readings", table, token)  # the same batch again: dropped by its token
    assert backend.count("readings", final=False) == 100
    got = backend.q("SELECT event_id, province, province_original, ts, value, dims FROM DB.readings "
                    "WHERE event_id = {id:String}", {"id": "h7"})
    assert len(got) == 1
    row = got[0]
    assert (row["event_id"], row["province"], row["province_original"], row["value"], row["dims"]) == \
        ("h7", "08", "02", 7.0, {"line": "113"})  # a legacy province code stored under its current one
    assert utc(row["ts"]) == dt(T0 + 7)
    nasty = "x' OR 1=1 --\\"
    assert backend.q("SELECT count() AS n FROM DB.readings WHERE event_id = {v:String}", {"v": nasty}) == [{"n": 0}]


def test_an_engine_error_is_a_warehouse_error_and_the_next_query_is_clean(backend: Backend) -> None:
    with pytest.raises(WarehouseError):
        backend.wh.query("SELEC nonsense")
    with pytest.raises(WarehouseError):
        backend.wh.query("SELECT * FROM DB.no_such_table".replace("DB.", f"{backend.wh.database}."))
    assert backend.wh.query("SELECT 41 + {n:UInt8} AS answer", {"n": 1}) == [{"answer": 42}]


CONCURRENT = 8


def test_concurrent_calls_from_many_threads(backend: Backend, catalog: Catalog) -> None:
    """The API calls the warehouse from worker threads, and analysts' /query calls arrive at once: every call gets
    its own answer (on the server: no shared session refuses a second query; on chDB: the lock orders them)."""
    migrate(backend.wh, catalog)

    def own_answer(i: int) -> Any:
        return backend.q("SELECT {i:UInt32} AS i, count() AS n FROM DB.provinces", {"i": i})

    with ThreadPoolExecutor(CONCURRENT) as pool:
        assert list(pool.map(own_answer, range(CONCURRENT * 4))) == [[{"i": i, "n": 34}]
                                                                    for i in range(CONCURRENT * 4)]
    queries = AnalystQueries(backend.settings)
    try:
        with ThreadPoolExecutor(CONCURRENT) as pool:
            results = list(pool.map(lambda _: queries.run("SELECT count() AS n FROM feeds"), range(CONCURRENT * 2)))
        assert [r.rows for r in results] == [[[25]]] * (CONCURRENT * 2)
        with pytest.raises(QueryRefused):  # read-only, enforced by the engine on both backends
            queries.run("INSERT INTO feeds (id) VALUES ('x')")
        with pytest.raises(QueryRefused, match="only the .* database can be queried"):
            queries.run("SELECT * FROM system.users")
    finally:
        queries.close()
    assert backend.count("feeds", final=False) == 25
