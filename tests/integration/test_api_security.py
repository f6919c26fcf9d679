"""Who may do what: the role × endpoint matrix, revocation, limits, analyst SQL, no secret in logs."""

from __future__ import annotations

import gzip
import logging
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tests.conftest import register_secret
from tests.integration.api_client import api_client

pytestmark = pytest.mark.integration

# (method, path, body, least role). Every other role must get 403, no key 401.
ENDPOINTS = [
    ("GET", "/feeds", None, "viewer"),
    ("GET", "/provinces", None, "viewer"),
    ("GET", "/agencies", None, "viewer"),
    ("GET", "/agencies/hydromet", None, "viewer"),
    ("GET", "/overview", None, "viewer"),
    ("GET", "/series?feed=water_level", None, "viewer"),
    ("GET", "/indicators", None, "viewer"),
    ("GET", "/indicators/new_enterprises_m", None, "viewer"),
    ("PUT", "/indicators/new_enterprises_m/targets/2026", {"value": 1}, "admin"),
    ("GET", "/reports/forms", None, "viewer"),
    ("GET", "/reports/compliance?form=BC_NHIEMVU_THANG", None, "viewer"),
    ("GET", "/reports/BC_NHIEMVU_THANG/2026-10", None, "viewer"),
    ("POST", "/query", {"sql": "SELECT 1 AS one"}, "viewer"),
    ("GET", "/alerts", None, "viewer"),
    ("GET", "/incidents", None, "viewer"),
    ("GET", "/admin/keys", None, "admin"),
    ("POST", "/admin/keys", {"name": "x", "role": "viewer"}, "admin"),
    ("DELETE", "/admin/keys/000000000000", None, "admin"),
    ("GET", "/audit", None, "admin"),
    ("POST", "/ingest", [], "agency"),
]
ALLOWED = {"viewer": {"viewer", "operator", "admin"}, "operator": {"operator", "admin"}, "admin": {"admin"},
           "agency": {"agency"}}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def test_role_matrix(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        store = client.app.state.api.security.keys  # type: ignore[attr-defined]
        scoped = {role: store.create(name=f"scoped-{role}", role=role, created_by="test",
                                     provinces=["01", "79"])[0].token for role in ("viewer", "operator")}
        for token in scoped.values():
            register_secret(token)
        for method, path, body, least in ENDPOINTS:
            assert client.request(method, path, json=body).status_code == 401, (method, path)
            bad = client.request(method, path, json=body, headers={"Authorization": "Bearer cr_000000000000_nope"})
            assert bad.status_code == 401, (method, path)
            for role in ("viewer", "operator", "admin", "agency"):
                if method == "POST" and path == "/ingest" and role in ALLOWED[least]:
                    continue  # needs the broker: covered by the ingest test below
                status = client.request(method, path, json=body, headers=keys.header(role)).status_code
                if role in ALLOWED[least]:
                    assert status in (200, 201, 404), (method, path, role, status)  # 404: the dummy key id
                else:
                    assert status == 403, (method, path, role, status)
            # the scope dimension: a province-scoped key has its role's access (what it then sees of the data:
            # tests/integration/test_api_scope.py)
            for role, token in scoped.items():
                auth = {"Authorization": f"Bearer {token}"}
                status = client.request(method, path, json=body, headers=auth).status_code
                assert (status in (200, 201, 404)) == (role in ALLOWED[least]), (method, path, "scoped", role, status)
        assert client.get("/healthz").status_code == 200  # health stays open for probes


def test_revocation_takes_effect_on_the_next_request(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        made = client.post("/admin/keys", json={"name": "temp", "role": "viewer"}, headers=keys.header("admin"))
        assert made.status_code == 201
        token, key_id = made.json()["key"], made.json()["key_id"]
        register_secret(token)
        assert client.get("/feeds", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        listed = client.get("/admin/keys", headers=keys.header("admin")).json()
        assert all("secret_hash" not in k and "key" not in k for k in listed)
        assert client.delete(f"/admin/keys/{key_id}", headers=keys.header("admin")).status_code == 200
        assert client.get("/feeds", headers={"Authorization": f"Bearer {token}"}).status_code == 401
        actions = [(a["action"], a["target"]) for a in client.get("/audit", headers=keys.header("admin")).json()]
        assert ("key.revoke", key_id) in actions and ("key.create", key_id) in actions


def test_rate_limit_answers_429_with_retry_after(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False, rate_limit_per_s=0.5, rate_limit_burst=3)) as (client, keys):
        codes = [client.get("/provinces", headers=keys.header("viewer")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        limited = client.get("/provinces", headers=keys.header("viewer"))
        assert int(limited.headers["Retry-After"]) >= 1
        assert client.get("/provinces", headers=keys.header("admin")).status_code == 200  # other keys unaffected


def test_size_limits(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(embedded_sink=False, ingest_max_bytes=2_000, ingest_max_readings=2)
    with api_client(settings) as (client, keys):
        big = client.post("/ingest", content=b"[" + b" " * 5_000 + b"]", headers=keys.header("agency"))
        assert big.status_code == 413
        bomb = gzip.compress(b"[" + b" " * 100_000 + b"]")  # small on the wire, large inflated
        r = client.post("/ingest", content=bomb, headers={**keys.header("agency"), "Content-Encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in r.json()["detail"]
        many = client.post("/ingest", json=[{}, {}, {}], headers=keys.header("agency"))
        assert many.status_code == 413 and "limit is 2" in many.json()["detail"]


def test_security_headers_and_no_cors_by_default(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        r = client.get("/feeds", headers={**keys.header("viewer"), "Origin": "http://evil.example"})
        assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
        assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(("sql", "words"), [
    ("INSERT INTO readings (event_id) VALUES ('x')", "SELECT"),
    ("DROP TABLE readings", "SELECT"),
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "readonly"),
    ("SELECT 1 SETTINGS readonly = 0", "readonly"),
    ("SELECT number FROM numbers(100000)", "Limit for result exceeded"),
    ("SELECT sleep(2)", "Timeout exceeded"),
    ("SELECT count() FROM readings; DROP TABLE readings", "SELECT"),
])
def test_query_cannot_write_escape_or_run_past_limits(make_settings, sql: str, words: str) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(embedded_sink=False, query_max_rows=1000, query_max_seconds=1.0)
    with api_client(settings) as (client, keys):
        r = client.post("/query", json={"sql": sql}, headers=keys.header("viewer"))
        assert r.status_code == 400 and words.lower() in r.json()["detail"].lower(), r.text
        still = client.post("/query", json={"sql": "SELECT count() AS n FROM readings"}, headers=keys.header("viewer"))
        assert still.json() == {"columns": ["n"], "rows": [[0]]}  # the table is still there, untouched


OUTSIDE = [  # what a viewer's /query must never read: (sql, what the refusal names)
    ("SELECT * FROM system.users", "system.users"),
    ("SELECT key_id, secret_hash FROM controlroom_admin.api_keys", "controlroom_admin.api_keys"),  # key hashes
    ("SELECT * FROM controlroom_admin.audit_log", "controlroom_admin.audit_log"),  # who changed what
    ("SELECT doc FROM controlroom_admin.subscriptions", "controlroom_admin.subscriptions"),  # targets, e-mails
    ("SELECT target FROM controlroom_admin.alert_deliveries", "controlroom_admin.alert_deliveries"),  # the same
    ("SELECT count() FROM readings WHERE province IN (SELECT arrayJoin(provinces) FROM controlroom_admin.api_keys)",
     "controlroom_admin.api_keys"),
    ("SELECT * FROM merge('controlroom_admin', '.*')", "merge()"),
]


def test_query_never_reads_the_admin_database(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(kafka_bootstrap=broker, embedded_sink=False)) as (client, keys):
        made = client.post("/subscriptions", headers=keys.header("admin"),
                           json={"id": "boss", "name": "duty officer", "channel": "email", "target": "boss@example.vn"})
        assert made.status_code == 201, made.text
        # the admin paths still read and write them, in their new database
        assert [s["id"] for s in client.get("/subscriptions", headers=keys.header("admin")).json()] == ["boss"]
        audit = client.get("/audit", headers=keys.header("admin")).json()
        assert [a["target"] for a in audit if a["action"] == "subscription.create"] == ["boss"]
        for sql, named in OUTSIDE:
            for role in ("viewer", "operator"):
                r = client.post("/query", json={"sql": sql}, headers=keys.header(role))
                assert r.status_code == 403, (sql, r.text)
                assert "only the controlroom database" in r.json()["detail"] and named in r.json()["detail"], r.text
        for table in ("api_keys", "audit_log", "subscriptions", "alert_deliveries"):  # none left where analysts read
            gone = client.post("/query", json={"sql": f"SELECT * FROM {table}"}, headers=keys.header("viewer"))
            assert gone.status_code == 400 and table in gone.json()["detail"], gone.text


def test_query_json_and_csv(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        sql = "SELECT code, name_en FROM provinces WHERE code IN ('01', '79') ORDER BY code"
        r = client.post("/query", json={"sql": sql}, headers=keys.header("viewer"))
        assert r.json() == {"columns": ["code", "name_en"], "rows": [["01", "Hanoi"], ["79", "Ho Chi Minh City"]]}
        csv = client.post("/query", json={"sql": sql, "format": "csv"}, headers=keys.header("viewer"))
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text == '"code","name_en"\n"01","Hanoi"\n"79","Ho Chi Minh City"\n'


async def read_topic(bootstrap: str, topic: str, n: int) -> list[dict]:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    out: list[dict] = []  # type: ignore[type-arg]
    deadline = time.monotonic() + 15
    try:
        while len(out) < n and time.monotonic() < deadline:
            for recs in (await consumer.getmany(timeout_ms=300)).values():
                out.extend({"key": r.key, **orjson.loads(r.value)} for r in recs)
    finally:
        await consumer.stop()
    return out


async def test_ingest_scopes_agencies_and_dead_letters_rejects(broker: str, make_settings, caplog,  # type: ignore[no-untyped-def]
                                                               capfd) -> None:
    caplog.set_level(logging.DEBUG)
    ts = now_iso()
    ok = {"event_id": "ing-1", "feed": "water_level", "province": "01", "ts": ts, "value": 420,
          "dims": {"station": "s1"}, "source": "hydro-01"}
    batch = [ok,
             {**ok, "event_id": "ing-2", "feed": "gold_price", "province": "00", "value": 1.5e8,
              "dims": {"side": "buy"}},
             {**ok, "event_id": "ing-3", "province": "79"},
             {**ok, "event_id": "ing-4", "value": 99_999},
             {**ok, "event_id": "ing-5", "province": "02"}]  # legacy code of 08: not Hanoi
    with api_client(make_settings(kafka_bootstrap=broker, embedded_sink=False)) as (client, keys):
        r = client.post("/ingest", json=batch, headers=keys.header("agency_hanoi"))
        assert r.status_code == 200, r.text
        got = [(x["event_id"], x["status"], x["reason"], x["field"]) for x in r.json()["results"]]
        assert got == [("ing-1", "accepted", None, None), ("ing-2", "rejected", "not_allowed", "feed"),
                       ("ing-3", "rejected", "not_allowed", "province"), ("ing-4", "rejected", "out_of_range", "value"),
                       ("ing-5", "rejected", "not_allowed", "province")]
        # the same reading again, as gzip NDJSON from the unrestricted key: accepted, harmless downstream
        body = gzip.compress(orjson.dumps(ok) + b"\n" + b"{broken\n")
        r2 = client.post("/ingest", content=body, headers={**keys.header("agency"), "Content-Encoding": "gzip",
                                                           "Content-Type": "application/x-ndjson"})
        assert [(x["status"], x["reason"]) for x in r2.json()["results"]] == [("accepted", None),
                                                                               ("rejected", "malformed")]
        audit = client.get("/audit?action=ingest", headers=keys.header("admin")).json()
        assert [orjson.loads(a["after"])["accepted"] for a in audit] == [1, 1]
        tokens = keys.all()
    readings = await read_topic(broker, "feeds.water_level", 2)
    assert [(m["event_id"], m["key"]) for m in readings] == [("ing-1", b"01"), ("ing-1", b"01")]
    dead = await read_topic(broker, "feeds.dlq", 5)
    assert sorted(d["reason"] for d in dead) == ["malformed", "not_allowed", "not_allowed", "not_allowed",
                                                 "out_of_range"]
    # no key (nor its secret part) in anything logged during the test
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    for token in tokens:
        assert token not in logged and token.split("_", 2)[2] not in logged
