"""The read API on real chDB with rows inserted straight into the tables (complements test_api_reads.py).

Covers what a sink-written fixture cannot show: physical duplicates (the same event stored twice,
as a replay from other offsets leaves them until merges) counted once by /series and /overview;
the /overview figures (latest values, last 5 minutes, dead letters, late readings); reference
endpoints; the embedded sink started and stopped by the app's lifespan.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from controlroom.schema import dims_key
from controlroom.warehouse import Warehouse, literal
from tests.integration.api_client import api_client
from tests.integration.pipeline import wait_for

pytestmark = pytest.mark.integration

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def ts(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms}, 'UTC')"


def insert_readings(wh: Warehouse, rows: list[tuple[str, str, str, int, float, dict[str, str]]],
                    first_offset: int = 0, province_original: str | None = None) -> None:
    """(event_id, feed, province, ts_ms, value, dims) rows; offsets differ per call, as after a replay."""
    values = ", ".join(
        f"({literal(eid)}, {literal(feed)}, {literal(prov)}, {literal(province_original or prov)}, {ts(t)}, "
        f"{literal(v)}, {literal(dims)}, {literal(dims_key(dims))}, 'test', now64(3), {literal('feeds.' + feed)}, "
        f"0, {first_offset + i})"
        for i, (eid, feed, prov, t, v, dims) in enumerate(rows))
    wh.command(f"INSERT INTO {wh.database}.readings (event_id, feed, province, province_original, ts, value, dims, "
               f"dims_key, source, ingested_at, kafka_topic, kafka_partition, kafka_offset) VALUES {values}")


def count_physical(wh: Warehouse, table: str) -> int:
    return int(wh.query(f"SELECT count() AS n FROM {wh.database}.{table}")[0]["n"])


def points(body: dict[str, Any]) -> list[tuple[str, int, float, float, float, float, float, float]]:
    return [(p["t"][11:19], p["count"], p["sum"], p["min"], p["max"], p["avg"], p["last"], p["value"])
            for p in body["points"]]


def test_reference_endpoints_health_and_docs(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        h = keys.header("viewer")
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "warehouse": "ok", "sink": None}  # sink runs elsewhere

        feeds = client.get("/feeds", headers=h).json()
        assert len(feeds["feeds"]) == 25 and len(feeds["categories"]) == 7
        wl = next(f for f in feeds["feeds"] if f["id"] == "water_level")
        assert (wl["category"], wl["category_name_en"], wl["kind"], wl["unit"], wl["series"]) == (
            "regional_local", "Regional and local", "gauge", "cm", 68)  # 34 provinces × 2 stations
        assert sum(f["series"] for f in feeds["feeds"]) == 2146

        provinces = client.get("/provinces", headers=h).json()
        assert len(provinces) == 34 and "00" not in {p["code"] for p in provinces}
        tuyen_quang = next(p for p in provinces if p["code"] == "08")
        assert tuyen_quang["legacy_codes"] == ["02", "08"]

        spec = client.get("/openapi.json").json()
        assert spec["info"]["title"] == "Control Room API"
        assert {"/healthz", "/feeds", "/provinces", "/series", "/overview"} <= set(spec["paths"])


def test_series_counts_a_physically_duplicated_event_once(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        wh: Warehouse = client.app.state.api.warehouse  # type: ignore[attr-defined]
        rows = [("e1", "hotline_calls", "79", T0 + 1_000, 5.0, {"line": "113"}),
                ("e2", "hotline_calls", "79", T0 + 30_000, 7.0, {"line": "113"}),
                ("e3", "hotline_calls", "79", T0 + 45_000, 2.0, {"line": "115"}),
                ("e4", "hotline_calls", "01", T0 + 50_000, 100.0, {"line": "113"}),
                ("e5", "hotline_calls", "79", T0 + 61_000, 1.0, {"line": "113"})]
        insert_readings(wh, rows)
        insert_readings(wh, rows[:3], first_offset=100)  # a replay: same events, other offsets
        assert count_physical(wh, "readings") == 8  # the copies are really there until a merge

        h = keys.header("viewer")
        span = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-01T07:02:00+07:00"}
        r = client.get("/series", params={"feed": "hotline_calls", "province": "79", **span}, headers=h).json()
        assert (r["feed"], r["province"], r["unit"], r["kind"], r["step"], r["source"]) == (
            "hotline_calls", "79", "calls", "counter", 60, "raw")
        assert (r["from"], r["to"]) == ("2026-01-01T00:00:00.000Z", "2026-01-01T00:02:00.000Z")
        assert points(r) == [("00:00:00", 3, 14.0, 2.0, 7.0, 14.0 / 3, 2.0, 14.0),
                             ("00:01:00", 1, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)]

        one_line = client.get("/series", params=[("feed", "hotline_calls"), ("province", "79"),
                                                 ("dims", "line:113"), ("step", "120"), ("from", str(T0)),
                                                 ("to", str(T0 + 2 * MIN))], headers=h).json()
        assert points(one_line) == [("00:00:00", 3, 13.0, 1.0, 7.0, 13.0 / 3, 1.0, 13.0)]
        both_lines = client.get("/series", params=[("feed", "hotline_calls"), ("province", "79"),
                                                   ("dims", "line:113"), ("dims", "line:115"), ("step", "120"),
                                                   ("from", str(T0)), ("to", str(T0 + 2 * MIN))], headers=h).json()
        assert [p["count"] for p in both_lines["points"]] == [4]
        everywhere = client.get("/series", params={"feed": "hotline_calls", "step": 120, "from": str(T0),
                                                   "to": str(T0 + 2 * MIN)}, headers=h).json()
        assert everywhere["province"] is None and [(p["count"], p["sum"]) for p in everywhere["points"]] == [(5, 115.0)]


def test_agg_series_reads_closed_windows_once(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        wh: Warehouse = client.app.state.api.warehouse  # type: ignore[attr-defined]

        def window(minute: int, partition: int, count: int, total: float, lo: float, hi: float, last: float,
                   last_s: int, closed_ms: int) -> str:
            start = T0 + minute * MIN
            return (f"('gold_price', '00', {{'side': 'buy'}}, 'side=buy', {partition}, {ts(start)}, "
                    f"{ts(start + MIN)}, {count}, {total}, {lo}, {hi}, {total / count}, {last}, "
                    f"{ts(start + last_s * 1000)}, {ts(closed_ms)})")

        cols = ("feed, province, dims, dims_key, source_partition, window_start, window_end, count, sum, min, max, "
                "avg, last, last_ts, closed_at")
        wh.command(f"INSERT INTO {wh.database}.agg_1m ({cols}) VALUES "
                   + ", ".join([window(0, 0, 2, 200.0, 90.0, 110.0, 110.0, 50, T0 + 2 * MIN),
                                window(1, 0, 1, 120.0, 120.0, 120.0, 120.0, 10, T0 + 3 * MIN)]))
        # the window of minute 0 closed again after a restart (same identity): replaces, not adds
        wh.command(f"INSERT INTO {wh.database}.agg_1m ({cols}) VALUES "
                   + window(0, 0, 2, 200.0, 90.0, 110.0, 110.0, 50, T0 + 9 * MIN))
        assert count_physical(wh, "agg_1m") == 3

        h = keys.header("viewer")
        r = client.get("/series", params={"feed": "gold_price", "province": "00", "source": "agg", "step": 60,
                                          "from": str(T0), "to": str(T0 + 2 * MIN)}, headers=h).json()
        assert (r["kind"], r["source"], r["province"]) == ("gauge", "agg", "00")
        assert points(r) == [("00:00:00", 2, 200.0, 90.0, 110.0, 100.0, 110.0, 100.0),
                             ("00:01:00", 1, 120.0, 120.0, 120.0, 120.0, 120.0, 120.0)]
        wide = client.get("/series", params={"feed": "gold_price", "source": "agg", "step": 120, "from": str(T0),
                                             "to": str(T0 + 2 * MIN)}, headers=h).json()
        assert points(wide) == [("00:00:00", 3, 320.0, 90.0, 120.0, 320.0 / 3, 120.0, 320.0 / 3)]


@pytest.mark.parametrize(("params", "field", "msg"), [
    ({"feed": "nope"}, "feed", "unknown feed 'nope'"),
    ({"feed": "gold_price", "province": "01"}, "province", "national feed gold_price has only province 00"),
    ({"feed": "water_level", "source": "agg", "step": "90"}, "step", "multiple of 60"),
    ({"feed": "water_level", "step": "1", "from": "0"}, "step", "points requested"),
    ({"feed": "water_level", "from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from", "before"),
    ({"feed": "water_level", "to": "2026-01-01T00:00:00"}, "to", "timezone"),
    ({"feed": "water_level", "dims": "station"}, "dims", "key:value"),
    ({"feed": "water_level", "source": "cooked"}, "source", ""),
    ({"feed": "water_level", "step": "86401"}, "step", ""),
    ({}, "feed", ""),
])
def test_bad_requests_are_422_naming_the_field(make_settings, params: dict[str, str], field: str,  # type: ignore[no-untyped-def]
                                               msg: str) -> None:
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        r = client.get("/series", params=params, headers=keys.header("viewer"))
        assert r.status_code == 422
        detail = r.json()["detail"][0]
        assert detail["loc"] == ["query", field] and msg in detail["msg"]


def test_overview_figures_from_known_timestamps(make_settings) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        wh: Warehouse = client.app.state.api.warehouse  # type: ignore[attr-defined]
        now = int(time.time() * 1000)
        rows = [
            # hotline_calls (counter, cadence 30 s: reporting within 90 s)
            ("h1", "hotline_calls", "79", now - 200_000, 4.0, {"line": "113"}),  # older, same series as h2
            ("h2", "hotline_calls", "79", now - 20_000, 6.0, {"line": "113"}),  # latest of 79/113
            ("h3", "hotline_calls", "79", now - 10_000, 3.0, {"line": "115"}),
            ("h4", "hotline_calls", "01", now - 100_000, 50.0, {"line": "113"}),  # silent: 100 s > 90 s
            # water_level (gauge, cadence 60 s: reporting within 180 s)
            ("w1", "water_level", "01", now - 30_000, 300.0, {"station": "s1"}),
            ("w2", "water_level", "01", now - 170_000, 200.0, {"station": "s2"}),
            ("w3", "water_level", "79", now - 400_000, 999.0, {"station": "s1"}),  # silent, outside 5 min
            # national gauge
            ("g1", "gold_price", "00", now - 5_000, 8.0e7, {"side": "sell"}),
            # too old for the look-back (15 min): as if never seen
            ("old", "electricity_load", "48", now - 1_000_000, 700.0, {}),
        ]
        insert_readings(wh, rows)
        insert_readings(wh, rows[:2] + rows[4:5], first_offset=100)  # replayed copies
        db = wh.database
        wh.command(f"INSERT INTO {db}.dead_letters (dlq_id, reason, field, detail, payload, feed, source_topic, "
                   f"source_partition, source_offset, received_at, kafka_offset) VALUES "
                   f"('feeds.water_level:0:1', 'malformed', '', 'x', '{{', '', 'feeds.water_level', 0, 1, "
                   f"{ts(now - 60_000)}, 1), "
                   f"('feeds.water_level:0:2', 'out_of_range', 'value', 'x', '', 'water_level', 'feeds.water_level',"
                   f" 0, 2, {ts(now - 60_000)}, 2), "
                   f"('feeds.water_level:0:0', 'malformed', '', 'x', '', '', 'feeds.water_level', 0, 0, "
                   f"{ts(now - 600_000)}, 0)")
        wh.command(f"INSERT INTO {db}.dead_letters (dlq_id, reason, field, detail, payload, feed, source_topic, "
                   f"source_partition, source_offset, received_at, kafka_offset) VALUES "
                   f"('feeds.water_level:0:1', 'malformed', '', 'x', '{{', '', 'feeds.water_level', 0, 1, "
                   f"{ts(now - 59_000)}, 7)")  # the same dead letter written again
        wh.command(f"INSERT INTO {db}.late_readings (event_id, feed, province, dims, dims_key, ts, value, watermark, "
                   f"source_topic, source_partition, source_offset, detected_at) VALUES "
                   f"('late1', 'water_level', '01', {{'station': 's1'}}, 'station=s1', {ts(now - 400_000)}, 1.0, "
                   f"{ts(now - 100_000)}, 'feeds.water_level', 0, 9, {ts(now - 30_000)})")

        o = client.get("/overview", headers=keys.header("viewer")).json()
        t = o["totals"]
        assert t == {"feeds": 25, "feeds_reporting": 3, "categories": 7, "categories_reporting": 3,
                     "provinces": 34, "provinces_reporting": 2, "series_expected": 2146, "series_reporting": 5,
                     "series_silent": 2141, "series_unexpected": 0,
                     "readings_5m": 7,  # h1 h2 h3 h4 w1 w2 g1, each once despite the copies
                     "dead_letters_5m": 2, "late_5m": 1}
        feeds = {f["id"]: f for f in o["feeds"]}
        calls = feeds["hotline_calls"]
        assert (calls["series_expected"], calls["series_reporting"], calls["series_silent"]) == (170, 2, 168)
        assert calls["latest_value"] == 9.0  # 6 + 3: the latest of each reporting series, summed
        assert calls["last_5m"] == {"count": 4, "sum": 63.0, "avg": 63.0 / 4, "min": 3.0, "max": 50.0}
        level = feeds["water_level"]
        assert (level["series_reporting"], level["latest_value"]) == (2, 250.0)  # gauge: average of 300 and 200
        assert level["last_5m"] == {"count": 2, "sum": 500.0, "avg": 250.0, "min": 200.0, "max": 300.0}
        assert feeds["gold_price"]["latest_value"] == 8.0e7 and feeds["gold_price"]["series_silent"] == 1
        load = feeds["electricity_load"]
        assert (load["series_reporting"], load["last_ts"], load["latest_value"]) == (0, None, None)
        provinces = {p["code"]: p for p in o["provinces"]}
        assert (provinces["79"]["feeds_reporting"], provinces["79"]["series_reporting"]) == (1, 2)
        assert (provinces["01"]["feeds_reporting"], provinces["01"]["series_reporting"]) == (1, 2)
        assert provinces["48"]["last_ts"] is None and provinces["79"]["last_ts"] is not None
        cats = {c["id"]: c for c in o["categories"]}
        assert (cats["focal_issues"]["feeds_reporting"], cats["focal_issues"]["series_reporting"]) == (1, 2)
        assert cats["international_indices"]["feeds"] == ["fx_usd_vnd", "gold_price", "vn_index"]


async def test_embedded_sink_runs_inside_the_api(broker: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(kafka_bootstrap=broker, embedded_sink=True, sink_flush_interval_s=0.2)
    with api_client(settings) as (client, keys):
        assert client.app.state.api.sink_task is not None  # type: ignore[attr-defined]
        producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
        await producer.start()
        try:
            doc = {"event_id": "k1", "feed": "water_level", "province": "01", "ts": T0 + 5_000, "value": 321.5,
                   "dims": {"station": "s1"}, "source": "test"}
            await producer.send_and_wait("feeds.water_level", orjson.dumps(doc), key=b"01",
                                         headers=[("agency", b"hydromet")])  # water_level's supplier
        finally:
            await producer.stop()

        def landed() -> list[Any]:
            body = client.get("/series", params={"feed": "water_level", "province": "01", "from": str(T0),
                                                 "to": str(T0 + MIN)}, headers=keys.header("viewer")).json()
            return list(body["points"])

        pts = await wait_for(landed, timeout_s=60, what="the reading written by the embedded sink")
        assert [(p["count"], p["last"]) for p in pts] == [(1, 321.5)]
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["sink"]["running"] is True
        assert health["sink"]["rows"]["readings"] == 1 and health["sink"]["last_flush_s"] >= 0
        task = client.app.state.api.sink_task  # type: ignore[attr-defined]
    assert task.done() and task.exception() is None  # the lifespan stopped it cleanly
