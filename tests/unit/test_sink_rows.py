"""Sink conversions (Kafka records → Arrow rows), dedup tokens, migrations text and SQL quoting. No services."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from controlroom.catalog import Catalog
from controlroom.errors import ConfigError, WarehouseError
from controlroom.schema import (
    ALERTS_TOPIC,
    OUT_OF_RANGE,
    Reading,
    Rejection,
    alert_message,
    dead_letter,
    feed_of_dead_letter,
    late_message,
    window_message,
)
from controlroom.warehouse import chdb_path, check_identifier, literal, param_text, qualify, quote_string
from sinks import rows
from sinks.migrate import migration_files, reference_tables, render, split_statements
from sinks.recompute import Trigger
from sinks.rows import Record

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FUTURE_MS = 300_000


def dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def reading(eid: str, feed: str, province: str, ts: object, value: object, **dims: str) -> bytes:
    return orjson.dumps({"event_id": eid, "feed": feed, "province": province, "ts": ts, "value": value,
                         "dims": dims, "source": "unit"})


def convert(records: list[Record], catalog: Catalog) -> rows.Converted:
    return rows.convert(records, catalog, max_future_ms=FUTURE_MS, ingested_ms=T0 + 999)


def test_readings_rows_exact_with_legacy_province_kept(catalog: Catalog) -> None:
    recs = [
        Record("feeds.water_level", 2, 10, T0, reading("w1", "water_level", "01", T0 - 1_000, 412.5, station="s1"),
               "hydromet"),
        # legacy code 02 (Hà Giang) → current 08; the code as sent stays in province_original
        Record("feeds.hotline_calls", 0, 7, T0, reading("h1", "hotline_calls", "02", "2026-01-01T07:00:00+07:00", 4,
                                                        line="113"), "hotlines"),
        Record("feeds.hotline_calls", 0, 8, T0, reading("h2", "hotline_calls", "01", T0, 4, line="113")),  # no header
    ]
    out = convert(recs, catalog)
    assert out.rejected == 1 and out.malformed == 0
    assert list(out.tables) == ["readings"]
    assert out.tables["readings"].to_pylist() == [
        {"event_id": "w1", "feed": "water_level", "province": "01", "province_original": "01", "ts": dt(T0 - 1_000),
         "value": 412.5, "dims": [("station", "s1")], "dims_key": "station=s1", "source": "unit",
         "ingested_at": dt(T0 + 999), "kafka_topic": "feeds.water_level", "kafka_partition": 2, "kafka_offset": 10,
         "commune": "", "agency": "hydromet"},
        {"event_id": "h1", "feed": "hotline_calls", "province": "08", "province_original": "02", "ts": dt(T0),
         "value": 4.0, "dims": [("line", "113")], "dims_key": "line=113", "source": "unit",
         "ingested_at": dt(T0 + 999), "kafka_topic": "feeds.hotline_calls", "kafka_partition": 0, "kafka_offset": 7,
         "commune": "", "agency": "hotlines"},
    ]
    assert out.tables["readings"].schema == rows.SCHEMAS["readings"]


def test_invalid_readings_are_skipped_and_counted(catalog: Catalog) -> None:
    recs = [
        Record("feeds.water_level", 0, 0, T0, b"{not json", "hydromet"),
        Record("feeds.water_level", 0, 1, T0, reading("r", "water_level", "01", T0, 99_999, station="s1"), "hydromet"),
        Record("feeds.water_level", 0, 2, T0, reading("p", "water_level", "99", T0, 1, station="s1"), "hydromet"),
        Record("feeds.water_level", 0, 3, T0, reading("m", "gold_price", "00", T0, 1, side="buy"),  # wrong topic
               "gold_market"),
        # in the future relative to the MESSAGE timestamp (not the wall clock): a deterministic verdict
        Record("feeds.water_level", 0, 4, T0, reading("f", "water_level", "01", T0 + FUTURE_MS + 1, 1, station="s1"),
               "hydromet"),
        Record("feeds.water_level", 0, 5, T0 + 10, reading("ok", "water_level", "01", T0 + FUTURE_MS + 1, 1,
                                                            station="s1"), "hydromet"),
        Record("feeds.water_level", 0, 6, T0, reading("w", "water_level", "01", T0, 1, station="s1"), "moh"),
    ]
    out = convert(recs, catalog)
    assert out.rejected == 6
    assert out.tables["readings"].column("event_id").to_pylist() == ["ok"]


def test_array_message_gives_one_row_per_valid_reading(catalog: Catalog) -> None:
    raw = orjson.dumps([orjson.loads(reading("a", "water_level", "01", T0, 1, station="s1")),
                        orjson.loads(reading("b", "water_level", "01", T0, -9_999, station="s1")),
                        orjson.loads(reading("c", "water_level", "01", T0 + 1, 2, station="s2"))])
    out = convert([Record("feeds.water_level", 1, 40, T0, raw, "hydromet")], catalog)
    table = out.tables["readings"]
    assert table.column("event_id").to_pylist() == ["a", "c"]
    assert table.column("kafka_offset").to_pylist() == [40, 40]
    assert out.rejected == 1


def test_agg_late_and_dead_letter_rows(catalog: Catalog) -> None:
    agg = window_message(feed="hotline_calls", province="79", dims={"line": "113"}, window_start_ms=T0, window_s=60,
                         count=2, total=10.0, vmin=3.0, vmax=7.0, last=3.0, last_ts_ms=T0 + 35_000,
                         closed_ms=T0 + 200_000, source_partition=3)
    r = Reading("e1", "water_level", "08", T0 + 30_000, 999.0, {"station": "s2"}, "src", "02", agency="hydromet")
    late = late_message(r, source_topic="feeds.water_level", partition=1, offset=55, watermark_ms=T0 + 170_000,
                        detected_ms=T0 + 180_000)
    bad = reading("x", "water_level", "01", T0, 99_999, station="s1")
    dlq = dead_letter(Rejection(OUT_OF_RANGE, "value", "too high"), bad, source_topic="feeds.water_level",
                      partition=2, offset=9, received_ms=T0 + 5, agency="hydromet")
    out = convert([Record("agg.1m", 0, 3, T0 + 1, orjson.dumps(agg)),
                   Record("feeds.late", 1, 4, T0 + 2, orjson.dumps(late)),
                   Record("feeds.dlq", 2, 5, T0 + 3, orjson.dumps(dlq))], catalog)
    assert out.tables["agg_1m"].to_pylist() == [{
        "feed": "hotline_calls", "province": "79", "dims": [("line", "113")], "dims_key": "line=113",
        "source_partition": 3, "window_start": dt(T0), "window_end": dt(T0 + 60_000), "count": 2, "sum": 10.0,
        "min": 3.0, "max": 7.0, "avg": 5.0, "last": 3.0, "last_ts": dt(T0 + 35_000), "closed_at": dt(T0 + 200_000),
        "revision": 0, "agency": ""}]  # a window without a source (max_offset) is stored as given
    # the late reading within the horizon is stored and makes the sink recompute its window from raw readings
    assert out.triggers == [Trigger("water_level", "08", "station=s2", T0, "feeds.water_level", 1, 55,
                                    ("feeds.late", 1, 4))]
    assert out.tables["late_readings"].to_pylist() == [{
        "event_id": "e1", "feed": "water_level", "province": "08", "dims": [("station", "s2")],
        "dims_key": "station=s2", "ts": dt(T0 + 30_000), "value": 999.0, "watermark": dt(T0 + 170_000),
        "source_topic": "feeds.water_level", "source_partition": 1, "source_offset": 55,
        "detected_at": dt(T0 + 180_000), "status": "amended", "agency": "hydromet"}]  # the sender: its timeliness
    assert out.tables["dead_letters"].to_pylist() == [{
        "dlq_id": "feeds.water_level:2:9", "reason": "out_of_range", "field": "value", "detail": "too high",
        "payload": bad.decode(), "feed": "water_level", "source_topic": "feeds.water_level", "source_partition": 2,
        "source_offset": 9, "received_at": dt(T0 + 5), "kafka_offset": 5, "agency": "hydromet"}]  # its validity


def test_the_workers_windows_and_amending_late_readings_are_triggers_not_rows(catalog: Catalog) -> None:
    agg = window_message(feed="hotline_calls", province="79", dims={"line": "113"}, window_start_ms=T0, window_s=60,
                         count=2, total=10.0, vmin=3.0, vmax=7.0, last=3.0, last_ts_ms=T0 + 35_000,
                         closed_ms=T0 + 200_000, source_partition=3, source_topic="feeds.hotline_calls", max_offset=41)
    r = Reading("e1", "water_level", "01", T0 + 30_000, 9.0, {"station": "s2"}, "src", "01")
    too_late = late_message(r, source_topic="feeds.water_level", partition=1, offset=55, watermark_ms=T0 + 9 ** 9,
                            detected_ms=T0, amend=False)
    out = convert([Record("agg.1m", 0, 3, T0 + 1, orjson.dumps(agg)),
                   Record("feeds.late", 1, 4, T0 + 2, orjson.dumps(too_late))], catalog)
    assert out.tables["agg_1m"].num_rows == 0  # stored once recomputed from the readings, not copied
    assert out.triggers == [Trigger("hotline_calls", "79", "line=113", T0, "feeds.hotline_calls", 3, 41,
                                    ("agg.1m", 0, 3))]
    assert out.tables["late_readings"].column("status").to_pylist() == ["too_late"]


def test_dead_letter_feed_is_best_effort(catalog: Catalog) -> None:
    def feed_of(source_topic: str, payload: str) -> str:
        return feed_of_dead_letter({"source_topic": source_topic, "payload": payload}, catalog)

    assert feed_of("feeds.gold_price", "{not json") == "gold_price"  # from the topic
    assert feed_of("api", '{"feed": "water_level"}') == "water_level"  # from the payload
    assert feed_of("api", '[{"feed": "hotline_calls"}]') == "hotline_calls"
    assert feed_of("api", '{"feed": "no_such_feed"}') == ""  # never an arbitrary value
    assert feed_of("feeds.no_such_feed", "{not json") == ""
    assert feed_of("api", "") == ""


def test_unreadable_worker_messages_are_skipped_not_fatal(catalog: Catalog) -> None:
    good = window_message(feed="gold_price", province="00", dims={"side": "buy"}, window_start_ms=T0, window_s=60,
                          count=1, total=1.0, vmin=1.0, vmax=1.0, last=1.0, last_ts_ms=T0, closed_ms=T0,
                          source_partition=0)
    out = convert([Record("agg.1m", 0, 0, T0, b"garbage"),
                   Record("agg.1m", 0, 1, T0, orjson.dumps({**good, "count": -1})),  # would overflow UInt64
                   Record("agg.1m", 0, 2, T0, orjson.dumps({**good, "dims": {"side": 1}})),
                   Record("feeds.late", 0, 3, T0, orjson.dumps({"event_id": "x"})),
                   Record("feeds.dlq", 0, 4, T0, None),
                   Record("agg.1m", 0, 5, T0, orjson.dumps(good))], catalog)
    assert out.malformed == 5
    assert out.malformed_at[0] == ("agg.1m", 0, 0)
    assert out.tables["agg_1m"].num_rows == 1
    assert out.tables["late_readings"].num_rows == 0 and out.tables["dead_letters"].num_rows == 0


def test_dedup_token_is_deterministic_per_batch_content() -> None:
    a = [Record("feeds.x", 0, 5, T0, b"a"), Record("feeds.x", 0, 6, T0, b"b"), Record("feeds.x", 1, 2, T0, b"c")]
    token = rows.dedup_token("readings", a)
    assert token.startswith("readings:feeds.x-0-5-6,feeds.x-1-2-2:")
    assert rows.dedup_token("readings", list(reversed(a))) == token  # the order within a batch does not matter
    assert rows.dedup_token("agg_1m", a) != token
    # the same offsets with other bytes (a broker restarted from offset 0) is another batch, not a repeat
    assert rows.dedup_token("readings", [a[0], a[1], Record("feeds.x", 1, 2, T0, b"C")]) != token
    assert rows.dedup_token("readings", a[:2]) != token
    many = [Record(f"feeds.topic_{i}", p, 0, T0, b"") for i in range(40) for p in range(4)]
    assert len(rows.dedup_token("readings", many)) < 120


def test_quoting_is_injection_safe() -> None:
    assert quote_string("it's") == r"'it\'s'"
    assert quote_string("a\\' OR 1=1 --") == r"'a\\\' OR 1=1 --'"  # the backslash cannot un-escape the quote
    assert quote_string("x\ny\0") == r"'x\ny\0'"
    assert literal(["a'b", "c"]) == r"['a\'b', 'c']"
    assert literal({"k'": 1}) == r"{'k\'': 1}"
    assert literal(None) == "NULL" and literal(True) == "true" and literal(3) == "3" and literal(1.5) == "1.5"
    assert literal(datetime(2026, 1, 1, 7, 0, 0, 123000, tzinfo=UTC)) == "'2026-01-01 07:00:00.123'"
    with pytest.raises(WarehouseError):
        literal(object())
    # parameter text: data in ClickHouse's text form, never SQL
    assert param_text("a\tb\\c\nd'") == "a\\tb\\\\c\\nd'"
    assert param_text(["x'", "]"]) == r"['x\'', ']']"
    assert param_text(None) == "\\N" and param_text(False) == "0" and param_text(7) == "7"


def test_identifiers_are_checked_before_splicing() -> None:
    assert check_identifier("controlroom") == "controlroom"
    for bad in ("", "1db", "db; DROP TABLE x", "db.x", "db`"):
        with pytest.raises(ConfigError):
            check_identifier(bad)
    assert qualify("readings", "db") == "db.readings"
    assert qualify("other.readings", "db") == "other.readings"
    for bad in ("readings; DROP TABLE x", "a.b.c", "`x`", "x y"):
        with pytest.raises(WarehouseError):
            qualify(bad, "db")
    with pytest.raises(ConfigError):
        render("CREATE TABLE {db}.t (x UInt8)", "x; DROP DATABASE y")
    assert chdb_path("chdb:///abs/wh") == "/abs/wh" and chdb_path("chdb://./data/wh") == "./data/wh"


def test_alert_event_rows_carry_the_inhibiting_alert(catalog: Catalog) -> None:
    e = alert_message(fingerprint_="r|water_level|01|", rule_id="r", rule_version=1, rule_type="threshold",
                      severity="warning", event="firing", state="firing", seq=1, feed="water_level", province="01",
                      dims={}, summary_vi="vi", summary_en="en", value=1.0, evidence={}, starts_at_ms=1,
                      ends_at_ms=None, event_at_ms=2)
    records = [Record(ALERTS_TOPIC, 0, i, 0, orjson.dumps({**e, "seq": i + 1, **extra}))
               for i, extra in enumerate([{"inhibited_by": "a" * 16}, {"inhibited_by": None}, {}])]
    table = rows.convert(records, catalog, max_future_ms=0, ingested_ms=0).tables[rows.ALERT_EVENTS]
    assert table.column("inhibited_by").to_pylist() == ["a" * 16, "", ""]
    # the migration adds the column to both tables and the view that copies events into alerts_current
    sql = dict(migration_files())["0008"]
    assert "alert_events ADD COLUMN IF NOT EXISTS inhibited_by" in sql and "silenced, link, inhibited_by" in sql


def test_migration_files_and_statements() -> None:
    files = migration_files()
    versions = [v for v, _ in files]
    assert versions == sorted(versions) and versions[:2] == ["0001", "0002"]
    statements = split_statements(render(files[0][1], "cr"))
    assert all(s.startswith("CREATE TABLE IF NOT EXISTS cr.") for s in statements)
    names = [s.split("cr.", 1)[1].split(" ", 1)[0] for s in statements]
    assert names == ["readings", "agg_1m", "dead_letters", "late_readings", "categories", "feeds", "provinces"]
    assert split_statements("-- c\nA;\n\nB ;  \n-- x;\nC") == ["A", "B", "C"]


def test_reference_tables_mirror_the_catalog(catalog: Catalog) -> None:
    tables = reference_tables(catalog)
    assert tables["feeds"].num_rows == len(catalog.feeds) == 25
    assert tables["provinces"].num_rows == len(catalog.provinces) == 34
    assert tables["categories"].num_rows == len(catalog.categories)
    assert tables["communes"].num_rows == len(catalog.communes) == 3321
    assert {r["id"] for r in tables["feeds"].to_pylist() if r["communes"]} == \
        {f.id for f in catalog.feeds.values() if f.communes}
    p08 = next(r for r in tables["provinces"].to_pylist() if r["code"] == "08")
    assert p08["legacy_codes"] == ["02", "08"]
