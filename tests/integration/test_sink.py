"""The sink on real parts: Tansu broker, aiokafka, chDB. Exact rows, idempotent redelivery, offsets after inserts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from api.series_sql import overview_series_sql
from controlroom.catalog import Catalog, default_catalog
from controlroom.kafka import all_topics, ensure_topics
from controlroom.schema import (
    OUT_OF_RANGE,
    Reading,
    Rejection,
    agency_headers,
    agency_of,
    dead_letter,
    late_message,
    window_message,
)
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse, open_warehouse
from sinks.migrate import migrate
from sinks.rows import Record
from sinks.writer import SinkWriter
from tests.integration.pipeline import reading, wait_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MSG_TS = T0 + 10_000  # every message's Kafka timestamp: the reference of the future check


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


Msg = tuple[str, bytes | None, bytes]


async def publish(bootstrap: str, messages: list[Msg], timestamp_ms: int | None = MSG_TS) -> list[tuple[int, int]]:
    """Send in order (lz4, as producers do); return each message's (partition, offset). Message timestamps are
    MSG_TS unless given (None: the producer's clock)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="lz4")
    await producer.start()
    try:
        out = []
        for topic, key, value in messages:
            md = await producer.send_and_wait(topic, value, key=key, timestamp_ms=timestamp_ms,
                                              headers=agency_headers(default_catalog(), topic, key))
            out.append((md.partition, md.offset))
        return out
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, settings: Settings, catalog: Catalog) -> dict[str, int]:
    """The sink group's committed offsets as the broker has them (OffsetFetch; the group is not joined)."""
    topics, partitions = all_topics(catalog), settings.topic_partitions
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=settings.sink_group_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        out = {}
        for topic in topics:
            for p in range(partitions):
                off = await consumer.committed(TopicPartition(topic, p))
                if off is not None and off >= 0:
                    out[f"{topic}:{p}"] = off
        return out
    finally:
        await consumer.stop()


def expected_commits(topics: list[str], positions: list[tuple[int, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for topic, (partition, offset) in zip(topics, positions, strict=True):
        key = f"{topic}:{partition}"
        out[key] = max(out.get(key, 0), offset + 1)
    return out


async def read_back(bootstrap: str, topic: str, n: int, partitions: int) -> list[Record]:
    """The records of a topic as the sink sees them, read without a group (nothing is committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        out: list[Record] = []
        for _ in range(100):
            for tp, recs in (await consumer.getmany(timeout_ms=200)).items():
                out.extend(Record(tp.topic, tp.partition, r.offset, r.timestamp, r.value, agency_of(r.headers))
                           for r in recs)
            if len(out) >= n:
                return out
        raise AssertionError(f"read {len(out)} of {n} records back")
    finally:
        await consumer.stop()


def q(wh: Warehouse, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return wh.query(sql.replace("DB.", f"{wh.database}."), params)


def count(wh: Warehouse, table: str, final: bool = True) -> int:
    return int(q(wh, f"SELECT count() AS n FROM DB.{table}{' FINAL' if final else ''}")[0]["n"])


@asynccontextmanager
async def ready_warehouse(settings: Settings, catalog: Catalog) -> AsyncIterator[Warehouse]:
    """A migrated warehouse and the project's topics, closed afterwards."""
    wh = open_warehouse(settings)
    try:
        migrate(wh, catalog)
        await ensure_topics(settings, all_topics(catalog))
        yield wh
    finally:
        wh.close()


async def run_writer(writer: SinkWriter, until: Any, what: str, timeout_s: float = 60.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(writer.run(stop))
    try:
        await wait_for(lambda: task.done() or until(), timeout_s=timeout_s, what=what)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)  # raises here if the writer itself failed


# (migrations and query parameters: the Warehouse contract, tests/integration/test_warehouse_contract.py)


# --- the writer --------------------------------------------------------------------------------------

def messages() -> list[Msg]:
    agg = window_message(feed="hotline_calls", province="79", dims={"line": "113"}, window_start_ms=T0, window_s=60,
                         count=2, total=10.0, vmin=3.0, vmax=7.0, last=3.0, last_ts_ms=T0 + 35_000,
                         closed_ms=T0 + 200_000, source_partition=1)
    late_r = Reading("w-late", "water_level", "01", T0 + 30_000, 999.0, {"station": "s1"}, "test", "01",
                     agency="hydromet")
    late = late_message(late_r, source_topic="feeds.water_level", partition=2, offset=17,
                        watermark_ms=T0 + 170_000, detected_ms=T0 + 180_000, amend=False)
    bad = reading("bad-range", "water_level", "01", T0 + 2_000, 99_999, station="s1")
    dlq = dead_letter(Rejection(OUT_OF_RANGE, "value", "99999 outside [-500, 3000] cm"), bad,
                      source_topic="feeds.water_level", partition=3, offset=4, received_ms=T0 + 9_000,
                      agency="hydromet")
    pair = orjson.dumps([orjson.loads(reading("w3", "water_level", "01", T0 + 3_000, 105.0, station="s2")),
                         orjson.loads(reading("bad-in-array", "water_level", "01", T0, 1e9, station="s2"))])
    return [
        # a station in Phường Hoàn Kiếm: the commune goes to its own column, not into the series' dims
        ("feeds.water_level", b"01", reading("w1", "water_level", "01", T0 + 1_000, 100.0, station="s1",
                                             commune="00070")),
        ("feeds.water_level", b"01", reading("w2", "water_level", "01", T0 + 2_000, 110.5, station="s1")),
        ("feeds.hotline_calls", b"02", reading("h3", "hotline_calls", "02", T0 + 5_000, 4, line="113")),  # legacy
        ("feeds.water_level", b"01", pair),
        ("feeds.water_level", b"01", bad),  # rejected: not written here (the worker dead-letters it)
        ("feeds.water_level", b"01", b"{not json"),
        ("agg.1m", b"79", orjson.dumps(agg)),
        ("feeds.dlq", b"01", orjson.dumps(dlq)),
        ("feeds.late", b"01", orjson.dumps(late)),
    ]


async def test_writer_writes_exact_rows_and_commits_what_it_wrote(
        any_broker: str, make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(kafka_bootstrap=any_broker, sink_flush_interval_s=0.3, sink_heal_after_s=0.5)
    async with ready_warehouse(settings, catalog) as wh:
        msgs = messages()
        pos = await publish(any_broker, msgs)
        at = {i: p for i, p in enumerate(pos)}
        want = expected_commits([m[0] for m in msgs], pos)
        writer = SinkWriter(settings, catalog, wh)
        # raw readings are committed once their windows are checked (sinks/healer.py): no worker runs here, so
        # the sink recomputes them itself once they close (idle) and heal_after has passed
        await run_writer(writer, lambda: writer.stats.records >= len(msgs) and writer.stats.committed == want,
                         "all records written and committed")

        raw = q(wh, "SELECT * EXCEPT ingested_at FROM DB.readings FINAL ORDER BY event_id")
        assert raw == [
            {"event_id": "h3", "feed": "hotline_calls", "province": "08", "province_original": "02",
             "ts": dt(T0 + 5_000), "value": 4.0, "dims": {"line": "113"}, "dims_key": "line=113", "source": "test",
             "kafka_topic": "feeds.hotline_calls", "kafka_partition": at[2][0], "kafka_offset": at[2][1],
             "commune": "", "agency": "hotlines"},
            {"event_id": "w1", "feed": "water_level", "province": "01", "province_original": "01", "ts": dt(T0 + 1_000),
             "value": 100.0, "dims": {"station": "s1"}, "dims_key": "station=s1", "source": "test",
             "kafka_topic": "feeds.water_level", "kafka_partition": at[0][0], "kafka_offset": at[0][1],
             "commune": "00070", "agency": "hydromet"},
            {"event_id": "w2", "feed": "water_level", "province": "01", "province_original": "01", "ts": dt(T0 + 2_000),
             "value": 110.5, "dims": {"station": "s1"}, "dims_key": "station=s1", "source": "test",
             "kafka_topic": "feeds.water_level", "kafka_partition": at[1][0], "kafka_offset": at[1][1],
             "commune": "", "agency": "hydromet"},
            {"event_id": "w3", "feed": "water_level", "province": "01", "province_original": "01", "ts": dt(T0 + 3_000),
             "value": 105.0, "dims": {"station": "s2"}, "dims_key": "station=s2", "source": "test",
             "kafka_topic": "feeds.water_level", "kafka_partition": at[3][0], "kafka_offset": at[3][1],
             "commune": "", "agency": "hydromet"},
        ]
        ingested = q(wh, "SELECT min(ingested_at) AS lo, max(ingested_at) AS hi FROM DB.readings")[0]
        assert datetime.now(UTC).timestamp() - ingested["lo"].timestamp() < 120
        assert q(wh, "SELECT * FROM DB.agg_1m FINAL WHERE feed = 'hotline_calls' AND province = '79'") == [{
            "feed": "hotline_calls", "province": "79", "dims": {"line": "113"}, "dims_key": "line=113",
            "source_partition": 1, "window_start": dt(T0), "window_end": dt(T0 + 60_000), "count": 2, "sum": 10.0,
            "min": 3.0, "max": 7.0, "avg": 5.0, "last": 3.0, "last_ts": dt(T0 + 35_000),
            "closed_at": dt(T0 + 200_000), "revision": 0, "agency": ""}]  # a window without a source: as sent
        assert q(wh, "SELECT * FROM DB.dead_letters FINAL") == [{
            "dlq_id": "feeds.water_level:3:4", "reason": "out_of_range", "field": "value",
            "detail": "99999 outside [-500, 3000] cm", "payload": msgs[4][2].decode(), "feed": "water_level",
            "source_topic": "feeds.water_level", "source_partition": 3, "source_offset": 4,
            "received_at": dt(T0 + 9_000), "kafka_offset": at[7][1], "agency": "hydromet"}]  # its sender
        assert q(wh, "SELECT * FROM DB.late_readings FINAL") == [{
            "event_id": "w-late", "feed": "water_level", "province": "01", "dims": {"station": "s1"},
            "dims_key": "station=s1", "ts": dt(T0 + 30_000), "value": 999.0, "watermark": dt(T0 + 170_000),
            "source_topic": "feeds.water_level", "source_partition": 2, "source_offset": 17,
            "detected_at": dt(T0 + 180_000), "status": "too_late", "agency": "hydromet"}]

        # the raw readings' windows, which no worker closed, were recomputed by the sink: one per series, minute
        # and partition, each equal to its readings
        raw_windows = {(r["dims_key"], r["kafka_partition"]) for r in raw}
        healed = q(wh, "SELECT dims_key, source_partition, count, revision FROM DB.agg_1m FINAL "
                       "WHERE NOT (feed = 'hotline_calls' AND province = '79') ORDER BY dims_key, source_partition")
        assert {(r["dims_key"], r["source_partition"]) for r in healed} == raw_windows
        assert sum(r["count"] for r in healed) == 4
        assert writer.stats.healed == len(raw_windows)
        assert writer.stats.rows == {"readings": 4, "agg_1m": 1, "dead_letters": 1, "late_readings": 1,
                                      "alert_events": 0, "alert_deliveries": 0, "incident_events": 0, "alert_notes": 0}
        assert writer.stats.rejected == 3  # out of range, malformed, the bad element of the array
        assert writer.stats.last_flush_s is not None and writer.stats.last_error is None
        # committed offsets are exactly the end of what was written, per topic-partition
        assert writer.stats.committed == want
        assert await committed_offsets(any_broker, settings, catalog) == want


async def test_closed_and_amended_windows_are_recomputed_from_stored_readings_once_they_are_all_stored(
        any_broker: str, make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    """The worker's closed window names its readings (topic-partition, max offset); the sink waits until it
    stored them, writes the window recomputed from `readings FINAL` (not the worker's figures), and does not
    commit the trigger before. A late reading within the horizon makes it recompute the window again."""
    settings: Settings = make_settings(kafka_bootstrap=any_broker, sink_flush_interval_s=0.2)
    T0 = (int(time.time() * 1000) // 60_000 - 2) * 60_000  # a recent minute: /overview's figures move too  # noqa: N806
    async with ready_warehouse(settings, catalog) as wh:
        raw = [("feeds.water_level", b"01", reading(f"r{i}", "water_level", "01", T0 + i * 10_000, float(v),
                                                       station="s1"))
               for i, v in enumerate([5, 1, 9])]
        raw.append(raw[0])  # a re-sent reading: stored once, counted once
        # the trigger first, its readings later: it must wait for them (the worker's count 99 is ignored)
        pos_raw_partition = (await publish(any_broker, timestamp_ms=None, messages=[raw[0]]))[0][0]
        closed = window_message(feed="water_level", province="01", dims={"station": "s1"}, window_start_ms=T0,
                                window_s=60, count=99, total=0.0, vmin=0.0, vmax=0.0, last=0.0, last_ts_ms=T0,
                                closed_ms=T0 + 70_000, source_partition=pos_raw_partition,
                                source_topic="feeds.water_level", max_offset=3)
        trig = await publish(any_broker, timestamp_ms=None, messages=[("agg.1m", b"01", orjson.dumps(closed))])
        writer = SinkWriter(settings, catalog, wh)
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        try:
            await wait_for(lambda: writer.stats.waiting_triggers == 1 and writer.stats.records >= 2,
                           timeout_s=30, what="the trigger waiting for its readings")
            assert count(wh, "agg_1m") == 0
            agg_tp = f"agg.1m:{trig[0][0]}"
            assert writer.stats.committed.get(agg_tp, 0) <= trig[0][1]  # not committed past the waiting trigger
            await publish(any_broker, timestamp_ms=None, messages=raw[1:])
            await wait_for(lambda: count(wh, "agg_1m") == 1, timeout_s=30, what="the recomputed window")
            row = q(wh, "SELECT count, sum, min, max, last, revision FROM DB.agg_1m FINAL")[0]
            assert row == {"count": 3, "sum": 15.0, "min": 1.0, "max": 9.0, "last": 9.0, "revision": 3}
            # a late reading amends it: stored raw, reported amended, the window recomputed with it
            late_r = Reading("r-late", "water_level", "01", T0 + 30_000, 100.0, {"station": "s1"}, "test", "01")
            late_pos = (await publish(any_broker, timestamp_ms=None, messages=[("feeds.water_level", b"01", reading(
                "r-late", "water_level", "01", T0 + 30_000, 100.0, station="s1"))]))[0]
            await publish(any_broker, timestamp_ms=None, messages=[("feeds.late", b"01", orjson.dumps(late_message(
                late_r, source_topic="feeds.water_level", partition=late_pos[0], offset=late_pos[1],
                watermark_ms=T0 + 200_000, detected_ms=T0 + 200_000)))])
            await wait_for(lambda: q(wh, "SELECT count FROM DB.agg_1m FINAL")[0]["count"] == 4, timeout_s=30,
                           what="the amended window")
            row = q(wh, "SELECT count, sum, max, last, revision FROM DB.agg_1m FINAL")[0]
            assert row == {"count": 4, "sum": 115.0, "max": 100.0, "last": 100.0, "revision": late_pos[1]}
            # the hourly rollup follows the amendment, and so do /overview's 5-minute figures
            hour = q(wh, "SELECT count, sum FROM DB.agg_1h FINAL")
            assert hour == [{"count": 4, "sum": 115.0}]
            sql, params = overview_series_sql(wh.database, T0 - 60_000, T0 - 60_000)
            [series] = wh.query(sql, params)
            assert (series["n_recent"], series["total_recent"], series["hi_recent"]) == (4, 115.0, 100.0)
            await wait_for(lambda: writer.stats.committed.get(agg_tp, 0) > trig[0][1], timeout_s=30,
                           what="the trigger committed once written")
        finally:
            stop.set()
            await task


async def test_a_restarted_sink_recomputes_a_window_whose_readings_an_earlier_instance_stored(
        any_broker: str, make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    """The readings were stored and committed before a restart; the window closes afterwards and nothing else
    arrives: the new sink learns from the group's committed offsets that they are stored, and recomputes.
    (The first sink commits the readings once it has checked their window: it recomputed it itself.)"""
    # the default flush interval (0.5 s > a poll)
    settings: Settings = make_settings(kafka_bootstrap=any_broker, sink_heal_after_s=0.5)
    async with ready_warehouse(settings, catalog) as wh:
        msgs = [("feeds.water_level", b"01", reading(f"k{i}", "water_level", "01", T0 + i * 1_000, float(i),
                                                     station="s1")) for i in range(3)]
        pos = await publish(any_broker, msgs)
        want = expected_commits([m[0] for m in msgs], pos)
        first = SinkWriter(settings, catalog, wh)
        await run_writer(first, lambda: first.stats.records >= 3 and first.stats.committed == want,
                         "the readings stored and committed")
        assert first.stats.healed == 1
        closed = window_message(feed="water_level", province="01", dims={"station": "s1"}, window_start_ms=T0,
                                window_s=60, count=3, total=3.0, vmin=0.0, vmax=2.0, last=2.0, last_ts_ms=T0 + 2_000,
                                closed_ms=T0 + 70_000, source_partition=pos[0][0], source_topic="feeds.water_level",
                                max_offset=pos[-1][1])
        await publish(any_broker, [("agg.1m", b"01", orjson.dumps(closed))])
        second = SinkWriter(settings, catalog, wh)
        await run_writer(second, lambda: second.stats.records >= 1 and second.stats.waiting_triggers == 0,
                         "the window recomputed by the restarted sink")
        assert q(wh, "SELECT count, sum, max FROM DB.agg_1m FINAL") == [{"count": 3, "sum": 3.0, "max": 2.0}]
        assert second.stats.recomputed == 1 and second.stats.rows["readings"] == 0  # learned, not re-read


async def test_a_window_no_worker_closed_is_recomputed_even_across_a_sink_crash(
        any_broker: str, make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    """The worker never closes this window (lost, or no worker at all). A first sink stores the readings and stops
    before their window is due for its check: nothing of them is committed, so the next sink reads them again,
    checks the window once it is closed and writes its aggregate, equal to the readings."""
    slow: Settings = make_settings(kafka_bootstrap=any_broker, sink_heal_after_s=600.0)
    async with ready_warehouse(slow, catalog) as wh:
        msgs = [("feeds.water_level", b"01", reading(f"n{i}", "water_level", "01", T0 + i * 7_000, float(i),
                                                     station="s1")) for i in range(20)]  # minutes T0, T0+1, T0+2
        pos = await publish(any_broker, msgs)
        first = SinkWriter(slow, catalog, wh)
        await run_writer(first, lambda: first.stats.records >= len(msgs) and first.stats.unchecked == 3,
                         "the readings stored, their windows waiting for the check")
        assert count(wh, "readings") == 20 and count(wh, "agg_1m") == 0
        held = await committed_offsets(any_broker, slow, catalog)  # held back behind the unchecked windows
        assert all(off <= pos[0][1] for off in held.values()), held
        second = SinkWriter(make_settings(kafka_bootstrap=any_broker, sink_heal_after_s=0.5), catalog, wh)
        want = expected_commits([m[0] for m in msgs], pos)
        await run_writer(second, lambda: second.stats.committed == want, "the windows checked and committed")
        assert second.stats.healed == 3
        assert q(wh, "SELECT toUnixTimestamp64Milli(window_start) AS ws, count, sum FROM DB.agg_1m FINAL "
                     "ORDER BY ws") == [{"ws": T0, "count": 9, "sum": float(sum(range(9)))},
                                        {"ws": T0 + 60_000, "count": 9, "sum": float(sum(range(9, 18)))},
                                        {"ws": T0 + 120_000, "count": 2, "sum": 18.0 + 19.0}]
        assert await committed_offsets(any_broker, slow, catalog) == want


async def test_same_batch_twice_and_restart_from_uncommitted_offsets_write_no_duplicate(
        broker: str, make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(kafka_bootstrap=broker, sink_flush_interval_s=0.3, sink_heal_after_s=0.5)
    async with ready_warehouse(settings, catalog) as wh:
        n = 500
        msgs: list[Msg] = [("feeds.water_level", f"{p:02d}".encode(),
                            reading(f"e{i}", "water_level", "01", T0 + i, float(i), station="s1"))
                           for i, p in zip(range(n), [1, 4, 8, 11] * n, strict=False)]
        pos = await publish(broker, msgs)
        records = await read_back(broker, "feeds.water_level", n, settings.topic_partitions)

        writer = SinkWriter(settings, catalog, wh)
        # a crash after the insert, before the commit: the same batch is delivered and written again
        assert writer.write(records) == {"readings": n}
        assert writer.write(records) == {"readings": n}
        assert count(wh, "readings", final=False) == n  # the dedup token dropped the repeat outright
        assert count(wh, "readings") == n

        # nothing was committed: a new writer re-reads everything from the start
        assert await committed_offsets(broker, settings, catalog) == {}
        want = expected_commits([m[0] for m in msgs], pos)
        writer2 = SinkWriter(settings, catalog, wh)
        # committed once their windows are checked (sinks/healer.py): closed when quiet, then heal_after
        await run_writer(writer2, lambda: writer2.stats.records >= n and writer2.stats.committed == want,
                         "re-read records written and committed")
        assert count(wh, "readings") == n  # no duplicate (FINAL collapses a differently cut batch)
        ids = q(wh, "SELECT groupUniqArray(event_id) AS ids, count() AS c FROM DB.readings FINAL")[0]
        assert sorted(ids["ids"]) == sorted(f"e{i}" for i in range(n)) and ids["c"] == n  # and none missing
        plain = count(wh, "readings", final=False)
        assert plain in (n, 2 * n)  # n when the re-read batch matched the first one exactly
        assert writer2.stats.committed == want
        assert await committed_offsets(broker, settings, catalog) == want


async def test_insert_failure_keeps_batch_and_offsets_until_it_succeeds(
        broker: str, make_settings, catalog: Catalog) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(kafka_bootstrap=broker, sink_flush_interval_s=0.2, sink_heal_after_s=0.5)
    async with ready_warehouse(settings, catalog) as wh:
        msgs: list[Msg] = [("feeds.water_level", b"01", reading(f"f{i}", "water_level", "01", T0 + i, 1.0,
                                                                  station="s1")) for i in range(50)]
        msgs.append(("feeds.dlq", b"01", orjson.dumps(dead_letter(
            Rejection(OUT_OF_RANGE, "value", "x"), b"{}", source_topic="feeds.water_level", partition=0, offset=1,
            received_ms=T0))))
        pos = await publish(broker, msgs)
        wh.command(f"RENAME TABLE {wh.database}.readings TO {wh.database}.readings_away")  # a real insert failure
        writer = SinkWriter(settings, catalog, wh)
        stop = asyncio.Event()
        task = asyncio.create_task(writer.run(stop))
        try:
            await wait_for(lambda: writer.stats.failed_inserts >= 2, timeout_s=60, what="failed, retried inserts")
            assert not task.done()  # it keeps retrying, it does not crash
            assert writer.stats.last_error is not None and "readings" in writer.stats.last_error
            assert "chdb://" not in writer.stats.last_error
            assert writer.stats.committed == {} and await committed_offsets(broker, settings, catalog) == {}
            assert writer.stats.rows["dead_letters"] == 1  # written once; not re-inserted by the retries
            await asyncio.to_thread(wh.command, f"RENAME TABLE {wh.database}.readings_away TO {wh.database}.readings")
            want = expected_commits([m[0] for m in msgs], pos)
            await wait_for(lambda: writer.stats.records >= len(msgs) and writer.stats.committed == want, timeout_s=60,
                           what="the retried batch, committed once its window is checked")
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
        assert count(wh, "readings", final=False) == 50 and count(wh, "readings") == 50
        assert count(wh, "dead_letters", final=False) == 1
        assert writer.stats.rows == {"readings": 50, "agg_1m": 0, "dead_letters": 1, "late_readings": 0,
                                      "alert_events": 0, "alert_deliveries": 0, "incident_events": 0, "alert_notes": 0}
        assert writer.stats.last_error is None
        assert await committed_offsets(broker, settings, catalog) == want


def test_a_failed_query_does_not_spoil_the_next(make_settings) -> None:  # type: ignore[no-untyped-def]
    """chDB hands a failed query's partial output to the next query on the session; the warehouse drains it."""
    from controlroom.errors import WarehouseError
    from controlroom.warehouse import open_warehouse

    wh = open_warehouse(make_settings())
    try:
        for bad in ("SELECT number FROM numbers(100000) SETTINGS max_result_rows = 10, result_overflow_mode = 'throw'",
                    "SELECT throwIf(number = 70000) FROM numbers(100000)"):
            with pytest.raises(WarehouseError):
                wh.query(bad)
            assert wh.query("SELECT 1 AS x") == [{"x": 1}]
    finally:
        wh.close()
