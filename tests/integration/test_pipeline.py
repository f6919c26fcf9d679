"""The walking skeleton end to end on real parts: Tansu broker, Faust worker process, sink, chDB.

A known set of readings — valid, duplicated, late, malformed, out of range, legacy province code —
goes in; the exact raw rows, 1-minute aggregates, late readings and dead letters must come out,
with the worker killed (SIGKILL) in the middle and restarted.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from controlroom.broker import stop_process
from controlroom.schema import agency_headers
from controlroom.warehouse import Warehouse, open_warehouse
from sinks.migrate import migrate
from sinks.writer import SinkWriter
from tests.integration.pipeline import reading, start_worker, wait_for

pytestmark = pytest.mark.integration

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


async def publish(bootstrap: str, messages: list[tuple[str, bytes, bytes]],
                  agency: dict[bytes, list[tuple[str, bytes]]] | None = None) -> None:
    """Each message sent as its series' supplier (header `agency`), unless `agency` gives the headers of a value."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="lz4")
    await producer.start()
    try:
        for topic, key, value in messages:
            headers = (agency or {}).get(value, agency_headers(_catalog(), topic, key))
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def wl(eid: str, ts: int, value: float, province: str = "01", station: str = "s1") -> tuple[str, bytes, bytes]:
    return ("feeds.water_level", province.encode(), reading(eid, "water_level", province, ts, value, station=station))


def hot(eid: str, ts: int, value: float, province: str, line: str = "113") -> tuple[str, bytes, bytes]:
    return ("feeds.hotline_calls", province.encode(), reading(eid, "hotline_calls", province, ts, value, line=line))


PHASE_1 = [
    wl("w1", T0 + 1_000, 100), wl("w2", T0 + 20_000, 110), wl("w3", T0 + 40_000, 105),
    wl("w2", T0 + 20_000, 110),  # duplicate: same event_id re-sent
    hot("h1", T0 + 5_000, 7, "79"), hot("h2", T0 + 35_000, 3, "79"),
    hot("h3", T0 + 10_000, 4, "02"),  # legacy code 02 (Hà Giang) → 08 Tuyên Quang
    ("feeds.water_level", b"01", b"{not json"),
    ("feeds.water_level", b"01", reading("bad-range", "water_level", "01", T0 + 2_000, 99_999, station="s1")),
    ("feeds.hotline_calls", b"99", reading("bad-prov", "hotline_calls", "99", T0 + 2_000, 1, line="113")),
    wl("no-agency", T0 + 3_000, 100), wl("wrong-agency", T0 + 3_000, 100),
]
NO_AGENCY, WRONG_AGENCY = PHASE_1[-2][2], PHASE_1[-1][2]
SENDERS = {NO_AGENCY: [], WRONG_AGENCY: [("agency", b"moh")]}  # the Ministry of Health sends no water level
PHASE_2 = [
    wl("w4", T0 + 50_000, 120), wl("w5", T0 + MIN + 5_000, 130),
    hot("h4", T0 + MIN + 1_000, 9, "79"),
    hot("h2", T0 + 35_000, 3, "79"),  # duplicate across the restart
    wl("w6", T0 + 3 * MIN, 90),  # watermark → 2:50: windows [0:00, 1:00) and [1:00, 2:00) close
    hot("h5", T0 + 3 * MIN, 1, "79"),
    hot("h6", T0 + 3 * MIN, 1, "02"),  # same key as h3, so its partition's watermark moves too
    wl("w-late", T0 + 30_000, 999),  # its window closed: late, reported, and it amends the stored window
    ("feeds.water_level", b"00", reading("bad-scope", "gold_price", "00", T0, 1, side="buy")),  # wrong topic
]


async def test_known_readings_give_exact_results_across_a_worker_crash(
        any_broker: str, make_settings, warehouse: Warehouse, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(kafka_bootstrap=any_broker, idle_advance_after_s=3600.0, sink_flush_interval_s=0.3)
    migrate(warehouse, _catalog())
    db = warehouse.database

    def q(sql: str) -> list[dict]:  # type: ignore[type-arg]
        return warehouse.query(sql.replace("DB.", f"{db}."))

    stop = asyncio.Event()
    sink = asyncio.create_task(SinkWriter(settings, _catalog(), warehouse).run(stop))
    worker = start_worker(settings, tmp_path / "worker1.log")
    try:
        await publish(any_broker, PHASE_1, SENDERS)
        # includes the worker's start (joining the group, creating its changelog): on Apache Kafka under a loaded
        # machine that alone took over a minute
        await wait_for(lambda: q("SELECT count() AS n FROM DB.dead_letters FINAL")[0]["n"] >= 5, timeout_s=180,
                       what="phase 1 dead letters")
        worker.send_signal(signal.SIGKILL)  # a crash: no flush, no commit
        worker.wait(10)
        worker = start_worker(settings, tmp_path / "worker2.log")
        await publish(any_broker, PHASE_2)
        await wait_for(lambda: q("SELECT count() AS n FROM DB.agg_1m FINAL")[0]["n"] >= 5
                       and q("SELECT count() AS n FROM DB.late_readings FINAL")[0]["n"] >= 1
                       and q("SELECT max(max) AS m FROM DB.agg_1m FINAL WHERE feed = 'water_level'")[0]["m"] == 999
                       and q("SELECT count() AS n FROM DB.dead_letters FINAL")[0]["n"] >= 6,
                       what="closed windows, late reading and dead letters")
        await asyncio.sleep(2.0)  # anything extra (a duplicate) would land by now
    finally:
        stop_process(worker)
        stop.set()
        await sink

    raw = q("SELECT event_id, feed, province, province_original, toUnixTimestamp64Milli(ts) AS ts, value, agency "
            "FROM DB.readings FINAL ORDER BY event_id")
    # each reading records the agency that delivered it (its header)
    assert {(r["feed"], r["agency"]) for r in raw} == {("hotline_calls", "hotlines"), ("water_level", "hydromet")}
    assert [(r["event_id"], r["province"], r["province_original"], int(r["ts"]) - T0, r["value"]) for r in raw] == [
        ("h1", "79", "79", 5_000, 7.0), ("h2", "79", "79", 35_000, 3.0), ("h3", "08", "02", 10_000, 4.0),
        ("h4", "79", "79", MIN + 1_000, 9.0), ("h5", "79", "79", 3 * MIN, 1.0), ("h6", "08", "02", 3 * MIN, 1.0),
        ("w-late", "01", "01", 30_000, 999.0), ("w1", "01", "01", 1_000, 100.0), ("w2", "01", "01", 20_000, 110.0),
        ("w3", "01", "01", 40_000, 105.0), ("w4", "01", "01", 50_000, 120.0), ("w5", "01", "01", MIN + 5_000, 130.0),
        ("w6", "01", "01", 3 * MIN, 90.0),
    ]
    # partial windows of one series from two partitions are summed, as every reader does
    aggs = q("SELECT feed, province, dims_key, toUnixTimestamp64Milli(window_start) AS ws, sum(count) AS n, "
             "sum(sum) AS total, min(min) AS lo, max(max) AS hi, total / n AS mean, "
             "argMax(last, last_ts) AS latest, any(agency) AS agency FROM DB.agg_1m FINAL "
             "GROUP BY feed, province, dims_key, window_start ORDER BY feed, province, ws")
    assert [(a["feed"], a["province"], a["dims_key"], int(a["ws"]) - T0, int(a["n"]), a["total"], a["lo"],
             a["hi"], a["mean"], a["latest"], a["agency"]) for a in aggs] == [
        ("hotline_calls", "08", "line=113", 0, 1, 4.0, 4.0, 4.0, 4.0, 4.0, "hotlines"),
        ("hotline_calls", "79", "line=113", 0, 2, 10.0, 3.0, 7.0, 5.0, 3.0, "hotlines"),
        ("hotline_calls", "79", "line=113", MIN, 1, 9.0, 9.0, 9.0, 9.0, 9.0, "hotlines"),
        # w1–w4 and the late w-late (999 at 0:30; the latest value is still w4's, at 0:50)
        ("water_level", "01", "station=s1", 0, 5, 1434.0, 100.0, 999.0, 286.8, 120.0, "hydromet"),
        ("water_level", "01", "station=s1", MIN, 1, 130.0, 130.0, 130.0, 130.0, 130.0, "hydromet"),
    ]
    hourly = q("SELECT feed, agency FROM DB.agg_1h FINAL ORDER BY feed")  # the rollups carry it too
    assert {(h["feed"], h["agency"]) for h in hourly} == {("hotline_calls", "hotlines"), ("water_level", "hydromet")}
    late = q("SELECT event_id, toUnixTimestamp64Milli(watermark) AS wm, status, agency FROM DB.late_readings FINAL")
    assert [(r["event_id"], int(r["wm"]) - T0, r["status"], r["agency"]) for r in late] == [
        ("w-late", 3 * MIN - 10_000, "amended", "hydromet")]  # its sender: the timeliness of its contract
    dead = q("SELECT reason, field, detail, source_topic, agency FROM DB.dead_letters FINAL ORDER BY reason")
    # each charged to the header that sent it (the validity of its contract); none without one
    assert [(d["reason"], d["field"], d["source_topic"], d["agency"]) for d in dead] == [
        ("feed_topic_mismatch", "feed", "feeds.water_level", "hydromet"),
        ("malformed", "", "feeds.water_level", "hydromet"),
        ("missing_agency", "header.agency", "feeds.water_level", ""),
        ("out_of_range", "value", "feeds.water_level", "hydromet"),
        ("unknown_province", "province", "feeds.hotline_calls", "hotlines"),
        ("wrong_agency", "header.agency", "feeds.water_level", "moh"),
    ]
    assert [d["detail"] for d in dead if d["field"] == "header.agency"] == [
        "header `agency` is missing", "header `agency` 'moh' does not supply feed water_level"]
    # nothing counted twice in storage either (ReplacingMergeTree may hold copies until merges)
    assert q("SELECT count() AS n, uniqExact(event_id) AS u FROM DB.readings FINAL")[0] == {"n": 13, "u": 13}


def _catalog():  # type: ignore[no-untyped-def]
    from controlroom.catalog import default_catalog

    return default_catalog()


async def test_a_worker_restarted_with_nothing_left_to_read_closes_its_restored_windows(
        any_broker: str, make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Killed after it had absorbed and committed everything: the restarted worker is handed no record at all,
    yet it is caught up, so its partitions' watermarks follow the clock and the restored windows close."""
    import time

    settings = make_settings(kafka_bootstrap=any_broker, idle_advance_after_s=3600.0, sink_flush_interval_s=0.3)
    warehouse = open_warehouse(settings)
    migrate(warehouse, _catalog())
    db = warehouse.database
    stop = asyncio.Event()
    sink = asyncio.create_task(SinkWriter(settings, _catalog(), warehouse).run(stop))
    now = int(time.time() * 1000)
    if now % MIN < 12_000:  # the previous minute's windows may close 10 s (the lateness) into this one
        await asyncio.sleep((12_000 - now % MIN) / 1000)
    minute = (int(time.time() * 1000) // MIN - 1) * MIN
    worker = start_worker(settings, tmp_path / "worker1.log")
    try:
        # the last seconds of the previous minute: an idle partition's watermark reaches the window's end soon
        await publish(any_broker, [wl("a", minute + 57_000, 100), wl("b", minute + 58_000, 110),
                               hot("c", minute + 59_000, 7, "79")])
        await wait_for(lambda: "readings=3" in (tmp_path / "worker1.log").read_text(), what="the worker took them")
        await asyncio.sleep(6.0)  # two commit intervals: offsets and changelog are durable
        assert warehouse.query(f"SELECT count() AS n FROM {db}.agg_1m")[0]["n"] == 0  # idle 1 h: still open
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        worker = start_worker(settings.model_copy(update={"idle_advance_after_s": 1.0}), tmp_path / "worker2.log")
        await wait_for(lambda: warehouse.query(f"SELECT sum(count) AS n FROM {db}.agg_1m FINAL")[0]["n"] == 3,
                       timeout_s=60, what="the restored windows closed and stored")
    finally:
        stop_process(worker)
        stop.set()
        await sink
        warehouse.close()
