"""The server backend shares no ClickHouse session between concurrent calls (POST /query from many requests at once).

No ClickHouse server runs here, so a stand-in on loopback speaks the part of ClickHouse's HTTP interface these
calls use and keeps ClickHouse's rule for sessions: a request naming a session that is still running a query is
refused with SESSION_IS_LOCKED (code 373), as the real server does. Every answer takes a while, so concurrent
calls really overlap. One test shows what the fault looks like: a client with a session id (what clickhouse-connect
makes up by default, and what /query used) refuses the second concurrent query itself. The same calls on a real
server: tests/integration/test_warehouse_contract.py with CLICKHOUSE_TEST_URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from api.readonly_sql import AnalystQueries, QueryRefused
from controlroom.errors import WarehouseError
from controlroom.settings import Settings
from controlroom.warehouse import ServerWarehouse

ANSWER_S = 0.3  # every query answer takes this long: concurrent calls overlap
CALLS = 4


class FakeClickHouse:
    """ClickHouse's HTTP interface as far as these tests need it, with its one-query-per-session rule."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions_running: set[str] = set()
        self.session_ids: list[str | None] = []  # of every query request
        self.databases: list[str | None] = []  # the `database` parameter of every query request
        self.running = self.peak = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                self.answer()

            def answer(self) -> None:
                params = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                text = params.get("query", "") + " " + self.rfile.read(length).decode("utf-8", "replace")
                status, body = fake.run(text, params)
                self.send_response(status)
                if status != 200:
                    self.send_header("X-ClickHouse-Exception-Code", body.split(b".")[0].split()[-1].decode())
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def run(self, text: str, params: dict[str, str]) -> tuple[int, bytes]:
        if "SELECT version(), timezone()" in text:  # the client's start-up questions
            return 200, b"25.8.1.1\tUTC\n"
        if "system.settings" in text or "AS check" in text:
            return 200, b""  # no rows (Native): the client then passes every setting on as given
        if "boom" in text:
            return 500, b"Code: 62. DB::Exception: Syntax error: failed at position 8 (boom). (SYNTAX_ERROR)\n"
        session = params.get("session_id")
        with self.lock:
            self.session_ids.append(session)
            self.databases.append(params.get("database"))
            if session is not None and session in self.sessions_running:
                return 500, (f"Code: 373. DB::Exception: Session {session} is locked by a concurrent client. "
                             "(SESSION_IS_LOCKED) (version 25.8.1.1)\n").encode()
            if session is not None:
                self.sessions_running.add(session)
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            threading.Event().wait(ANSWER_S)
            if text.lstrip().startswith("EXPLAIN"):
                database = params.get("database", "controlroom")  # where ClickHouse resolves `feeds`
                return 200, f"QUERY id: 0\n  JOIN TREE\n    TABLE id: 3, table_name: {database}.feeds\n".encode()
            if "JSONCompact" in text or params.get("default_format") == "JSONCompact":
                return 200, orjson.dumps({"meta": [{"name": "n", "type": "UInt64"}], "data": [[25]]})
            return 200, b""  # Native, no rows
        finally:
            with self.lock:
                self.running -= 1
                self.sessions_running.discard(session or "")

    @property
    def url(self) -> str:
        return f"http://default:@127.0.0.1:{self.port}"


@pytest.fixture()
def fake() -> Iterator[FakeClickHouse]:
    server = FakeClickHouse()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


def at_once(call: Callable[[], Any], n: int = CALLS) -> list[Any]:
    """`call` from n threads released together; what each returned or raised."""
    barrier = threading.Barrier(n)

    def one() -> Any:
        barrier.wait()
        try:
            return call()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: one(), range(n)))


def test_the_server_warehouse_has_no_session(fake: FakeClickHouse) -> None:
    wh = ServerWarehouse(fake.url, "controlroom")
    try:
        assert wh.session_id is None
        assert wh.query("SELECT 1") == []
        assert fake.session_ids == [None]
    finally:
        wh.close()


def test_concurrent_query_calls_share_no_session(fake: FakeClickHouse) -> None:
    queries = AnalystQueries(Settings(clickhouse_url=fake.url, clickhouse_database="controlroom"))
    try:
        results = at_once(lambda: queries.run("SELECT count() AS n FROM feeds"))
    finally:
        queries.close()
    assert [r.rows if not isinstance(r, Exception) else repr(r) for r in results] == [[[25]]] * CALLS
    assert fake.peak >= 2, "the calls did not overlap: the test proved nothing"
    assert set(fake.session_ids) == {None} and len(fake.session_ids) == 2 * CALLS  # EXPLAIN + the query, each


def test_query_names_the_database_its_tables_resolve_in(fake: FakeClickHouse) -> None:
    """A province-scoped key's /query runs with its scope's database as the default (api/scope.py), on a server as on
    chDB: the request carries it, and the analyzer's table list is checked against it."""
    queries = AnalystQueries(Settings(clickhouse_url=fake.url, clickhouse_database="controlroom"))
    try:
        assert queries.run("SELECT count() AS n FROM feeds", database="controlroom_p_01_79").rows == [[25]]
        assert queries.run("SELECT count() AS n FROM feeds").rows == [[25]]
    finally:
        queries.close()
    assert fake.databases == ["controlroom_p_01_79"] * 2 + ["controlroom"] * 2  # EXPLAIN + the query, each


def test_concurrent_warehouse_queries_run_side_by_side(fake: FakeClickHouse) -> None:
    wh = ServerWarehouse(fake.url, "controlroom")
    try:
        assert at_once(lambda: wh.query("SELECT 1")) == [[]] * CALLS
    finally:
        wh.close()
    assert fake.peak == CALLS  # no lock serialises them, and no session refuses them
    assert set(fake.session_ids) == {None}


def test_the_stand_in_refuses_a_shared_session(fake: FakeClickHouse) -> None:
    """What /query did before: one client, one made-up session id for all its requests."""
    import clickhouse_connect

    client = clickhouse_connect.get_client(host="127.0.0.1", port=fake.port, autogenerate_session_id=True)
    try:
        assert client.get_client_setting("session_id")
        results = at_once(lambda: client.raw_query("SELECT 1", fmt="JSONCompact"))
    finally:
        client.close()
    # clickhouse-connect itself refuses the second query of a session ("Attempt to execute concurrent queries
    # within the same session"); one that reached the server would be refused there (SESSION_IS_LOCKED)
    refused = [r for r in results if isinstance(r, Exception)]
    assert refused and all("concurrent queries within the same session" in str(r) or "SESSION_IS_LOCKED" in str(r)
                           for r in refused), results
    assert len(set(fake.session_ids)) == 1 and None not in fake.session_ids


def test_a_refused_query_says_why_and_not_the_password(fake: FakeClickHouse) -> None:
    """/query reports the server's own words (through WarehouseError, the password scrubbed, as query() does)."""
    url = fake.url.replace("default:@", "default:s3cret-pw@")
    wh = ServerWarehouse(url, "controlroom")
    try:
        with pytest.raises(WarehouseError) as err:
            wh.raw_query("SELECT boom", {}, "JSONCompact")
        assert "SYNTAX_ERROR" in str(err.value) and "s3cret-pw" not in str(err.value)
    finally:
        wh.close()
    queries = AnalystQueries(Settings(clickhouse_url=url, clickhouse_database="controlroom"))
    try:
        with pytest.raises(QueryRefused) as refused:
            queries.run("SELECT boom")
        assert str(refused.value).startswith("only a single SELECT query can run here; ClickHouse could not analyse "
                                             "it: Syntax error: failed at position 8")
    finally:
        queries.close()
