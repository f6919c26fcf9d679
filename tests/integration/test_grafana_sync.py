"""`controlroom grafana sync` against a small recording Grafana (stdlib HTTP server in a thread): the right uids,
idempotent on a second run, clear failures on 401, a missing plugin (404) and an unreachable Grafana; the
token and the ClickHouse password never appear in the output."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from controlroom.broker import free_port
from controlroom.cli import main
from grafana.layout import DASHBOARDS
from grafana.sync import GrafanaSyncError, sync
from tests.conftest import register_secret

pytestmark = pytest.mark.integration

TOKEN = "glsa_test_token_5f1c9e0b7a"  # a service-account token's shape
PASSWORD = "ro-pass-7d2f41c9"
ENV = {"CLICKHOUSE_HOST": "clickhouse", "CLICKHOUSE_READONLY_USER": "analyst", "CLICKHOUSE_READONLY_PASSWORD": PASSWORD}


@dataclass
class FakeGrafana:
    """What a Grafana holds, and every request it received (method, path, JSON body, Authorization)."""

    plugin: bool = True
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, str] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, Any, str]] = field(default_factory=list)

    def handle(self, method: str, path: str, body: Any, auth: str) -> tuple[int, Any]:
        self.requests.append((method, path, body, auth))
        if auth != f"Bearer {TOKEN}":
            return 401, {"message": "Unauthorized"}
        if path == "/api/plugins/grafana-clickhouse-datasource/settings" and method == "GET":
            return (200, {"id": "grafana-clickhouse-datasource"}) if self.plugin else (404, {"message": "not found"})
        if path.startswith("/api/datasources/uid/"):
            uid = path.rsplit("/", 1)[1]
            if method == "GET":
                return (200, self.datasources[uid]) if uid in self.datasources else (404, {"message": "not found"})
            if method == "PUT" and uid in self.datasources:
                self.datasources[uid] = body
                return 200, {"message": "Datasource updated"}
        if path == "/api/datasources" and method == "POST":
            if body["uid"] in self.datasources:
                return 409, {"message": "data source with the same uid already exists"}
            self.datasources[body["uid"]] = body
            return 200, {"message": "Datasource added", "datasource": body}
        if path.startswith("/api/folders/") and method == "GET":
            uid = path.rsplit("/", 1)[1]
            return (200, {"uid": uid, "title": self.folders[uid]}) if uid in self.folders else (404, {})
        if path == "/api/folders" and method == "POST":
            if body["uid"] in self.folders:
                return 409, {"message": "folder exists"}
            self.folders[body["uid"]] = body["title"]
            return 200, {"uid": body["uid"]}
        if path == "/api/dashboards/db" and method == "POST":
            uid = body["dashboard"]["uid"]
            if uid in self.dashboards and not body.get("overwrite"):
                return 412, {"status": "name-exists"}
            if body["folderUid"] not in self.folders:
                return 400, {"message": "folder not found"}
            self.dashboards[uid] = body
            return 200, {"status": "success", "uid": uid}
        return 404, {"message": f"no route {method} {path}"}


@pytest.fixture()
def grafana() -> Iterator[tuple[FakeGrafana, str]]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = state.handle(self.command, self.path, body, self.headers.get("Authorization", ""))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    register_secret(TOKEN)
    register_secret(PASSWORD)
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def expected_uids() -> list[str]:
    return sorted(json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS.glob("*.json"))


def test_sync_pushes_datasource_and_boards_idempotently(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    first = sync(url, TOKEN, ENV)
    assert first.datasource == "created" and first.folder == "created"
    assert sorted(first.dashboards) == expected_uids() and len(first.dashboards) == 14
    ds = state.datasources["controlroom-clickhouse"]
    assert ds["type"] == "grafana-clickhouse-datasource"
    assert ds["jsonData"]["host"] == "clickhouse" and ds["jsonData"]["defaultDatabase"] == "controlroom"
    assert ds["secureJsonData"]["password"] == PASSWORD  # from the environment, not from a file
    posts = [b for m, p, b, _ in state.requests if (m, p) == ("POST", "/api/dashboards/db")]
    assert all(b["overwrite"] is True and b["folderUid"] == "controlroom" and b["dashboard"]["id"] is None
               for b in posts)
    assert all(a == f"Bearer {TOKEN}" for *_, a in state.requests)
    snapshot = (dict(state.datasources), dict(state.folders), dict(state.dashboards))
    n_before = len(state.requests)

    second = sync(url, TOKEN, ENV)  # the same Grafana again: updates by uid, creates nothing
    assert second.datasource == "updated" and second.folder == "exists"
    assert (state.datasources, state.folders, state.dashboards) == snapshot
    again = state.requests[n_before:]
    assert not [r for r in again if (r[0], r[1]) in (("POST", "/api/datasources"), ("POST", "/api/folders"))]
    assert ("PUT", "/api/datasources/uid/controlroom-clickhouse") in {(m, p) for m, p, _, _ in again}


def test_401_is_a_clear_error(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    with pytest.raises(GrafanaSyncError, match=r"refused the token \(401"):
        sync(url, "wrong-token", ENV)
    assert state.datasources == {} and state.dashboards == {}


def test_missing_plugin_is_a_clear_error(grafana: tuple[FakeGrafana, str]) -> None:
    state, url = grafana
    state.plugin = False
    with pytest.raises(GrafanaSyncError, match="no ClickHouse plugin.*grafana-clickhouse-datasource"):
        sync(url, TOKEN, ENV)
    assert [(m, p) for m, p, _, _ in state.requests] == [("GET", "/api/plugins/grafana-clickhouse-datasource/settings")]


def test_unreachable_grafana_and_the_cli(grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    state, url = grafana
    with pytest.raises(GrafanaSyncError, match="cannot reach Grafana at http://127.0.0.1:"):
        sync(f"http://127.0.0.1:{free_port()}", TOKEN, ENV, timeout=2)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    seen: list[str] = []

    def output() -> tuple[str, str]:
        out, err = capfd.readouterr()
        seen.append(out + err)
        return out, err

    assert main(["grafana", "sync", "--url", url]) == 0
    assert "14 boards" in output()[0]
    monkeypatch.setenv("GRAFANA_TOKEN", "bad")
    assert main(["grafana", "sync", "--url", url]) == 2
    assert "401" in output()[1]
    monkeypatch.delenv("CLICKHOUSE_READONLY_PASSWORD")
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    assert main(["grafana", "sync", "--url", url]) == 2
    assert "CLICKHOUSE_READONLY_PASSWORD" in output()[1]
    assert len(state.dashboards) == 14
    assert not [s for s in seen if TOKEN in s or PASSWORD in s]  # read here, so checked here
