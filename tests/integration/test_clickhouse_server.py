"""The same migrate + insert + query path against a real ClickHouse server (clickhouse-connect).

Set CLICKHOUSE_TEST_URL=http(s)://user:pass@host:8123 to run it; a throw-away database is created and
dropped. Without it, or when nothing answers there, every test here is skipped and says why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from controlroom.catalog import Catalog
from controlroom.errors import WarehouseError
from controlroom.warehouse import ServerWarehouse, Warehouse, open_warehouse
from sinks.migrate import migrate
from sinks.rows import Record, convert, dedup_token

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000


@pytest.fixture()
def server(make_settings) -> Iterator[Warehouse]:  # type: ignore[no-untyped-def]
    url = os.environ.get("CLICKHOUSE_TEST_URL", "")
    if not url:
        pytest.skip("CLICKHOUSE_TEST_URL is not set: no ClickHouse server to test against "
                    "(e.g. CLICKHOUSE_TEST_URL=http://default:@127.0.0.1:8123)")
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))  # our own throw-away database, not the URL's
    settings = make_settings(clickhouse_url=base, clickhouse_database=f"crtest_{uuid.uuid4().hex[:10]}")
    try:
        wh = open_warehouse(settings)
        wh.query("SELECT 1 AS one")
    except WarehouseError as exc:
        pytest.skip(f"ClickHouse at CLICKHOUSE_TEST_URL is unreachable or refused us: {exc}")
    assert isinstance(wh, ServerWarehouse)
    try:
        yield wh
    finally:
        wh.command(f"DROP DATABASE IF EXISTS {wh.database}")
        wh.close()


def test_server_migrate_insert_query_and_dedup(server: Warehouse, catalog: Catalog) -> None:
    assert migrate(server, catalog) == ["0001", "0002"]
    assert migrate(server, catalog) == []
    assert server.query(f"SELECT count() AS n FROM {server.database}.feeds")[0]["n"] == 25

    recs = [Record("feeds.hotline_calls", 0, i, T0, orjson.dumps({
        "event_id": f"h{i}", "feed": "hotline_calls", "province": "02", "ts": T0 + i, "value": i,
        "dims": {"line": "113"},
    })) for i in range(100)]
    table = convert(recs, catalog, max_future_ms=300_000, ingested_ms=T0).tables["readings"]
    token = dedup_token("readings", recs)
    server.insert_arrow("readings", table, token)
    server.insert_arrow("readings", table, token)  # the same batch again: dropped by its token
    db = server.database
    assert server.query(f"SELECT count() AS n FROM {db}.readings")[0]["n"] == 100
    got = server.query(f"SELECT event_id, province, province_original, ts, value, dims FROM {db}.readings "
                       "WHERE event_id = {id:String}", {"id": "h7"})
    assert len(got) == 1
    row = got[0]
    assert (row["event_id"], row["province"], row["province_original"], row["value"], row["dims"]) == \
        ("h7", "08", "02", 7.0, {"line": "113"})
    assert row["ts"].replace(tzinfo=UTC) == datetime.fromtimestamp((T0 + 7) / 1000, tz=UTC)
    nasty = "x' OR 1=1 --\\"
    assert server.query("SELECT {v:String} AS v", {"v": nasty}) == [{"v": nasty}]
    assert server.query(f"SELECT count() AS n FROM {db}.readings WHERE event_id = {{v:String}}", {"v": nasty}) \
        == [{"n": 0}]
