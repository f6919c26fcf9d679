"""The chaos suite's oracle (bench/chaos_oracle.py) on hand-made rows: it must see every kind of violation."""

from __future__ import annotations

from typing import Any

from bench.chaos_oracle import (
    ExpectedEvent,
    check_alerts,
    check_late,
    check_notifications,
    check_raw,
    compare_aggregates,
    explain_missing,
    recompute,
    stored_aggregates,
)

M = 1_796_197_740_000  # a minute boundary (ms)
WL = ("water_level", "01", "station=s1")


def raw(eid: str, ts: int, value: float, series: tuple[str, str, str] = WL) -> dict[str, Any]:
    return {"event_id": eid, "feed": series[0], "province": series[1], "dims_key": series[2], "ts": ts, "value": value}


def agg(ws: int, count: int, total: float, lo: float, hi: float, last: float, last_ts: int, partition: int = 0,
        series: tuple[str, str, str] = WL) -> dict[str, Any]:
    return {"feed": series[0], "province": series[1], "dims_key": series[2], "source_partition": partition,
            "window_start": ws, "count": count, "sum": total, "min": lo, "max": hi, "last": last, "last_ts": last_ts}


RAW = [raw("a", M + 1_000, 10.0), raw("b", M + 20_000, 30.0), raw("c", M + 50_000, 20.0),
       raw("d", M + 60_000 + 5, 7.5)]
GOOD = [agg(M, 3, 60.0, 10.0, 30.0, 20.0, M + 50_000), agg(M + 60_000, 1, 7.5, 7.5, 7.5, 7.5, M + 60_005)]


def report(agg_rows: list[dict[str, Any]], raw_rows: list[dict[str, Any]] = RAW):  # type: ignore[no-untyped-def]
    return compare_aggregates(recompute(raw_rows), stored_aggregates(agg_rows))


# --- 1. raw --------------------------------------------------------------------------------------------------

def test_raw_exact_has_no_violation() -> None:
    rep = check_raw(["a", "b", "c"], ["c", "a", "b"])
    assert (rep.lost, rep.duplicated, rep.unknown, rep.violations()) == ([], {}, [], [])


def test_raw_detects_a_missing_reading() -> None:
    rep = check_raw(["a", "b", "c"], ["a", "c"])
    assert rep.lost == ["b"]
    assert rep.violations() == ["raw: 1 published readings missing from readings FINAL: b"]


def test_raw_detects_a_duplicate_and_an_unknown_id() -> None:
    rep = check_raw(["a", "b"], ["a", "b", "b", "b", "z"])
    assert rep.duplicated == {"b": 3} and rep.unknown == ["z"] and rep.extra_rows == 3
    assert len(rep.violations()) == 2 and "b×3" in rep.violations()[0]


# --- 2. aggregates -----------------------------------------------------------------------------------------------

def test_aggregates_equal_to_the_raw_recomputation() -> None:
    rep = report(GOOD)
    assert rep.series_minutes == 2 and rep.violations() == [] and rep.bad_minutes == 0


def test_partials_of_several_source_partitions_add_up() -> None:
    split = [agg(M, 2, 40.0, 10.0, 30.0, 30.0, M + 20_000, partition=0),
             agg(M, 1, 20.0, 20.0, 20.0, 20.0, M + 50_000, partition=3), GOOD[1]]
    assert report(split).violations() == []


def test_sums_within_a_relative_1e_9_only() -> None:
    close = [agg(M, 3, 60.0 * (1 + 1e-12), 10.0, 30.0, 20.0, M + 50_000), GOOD[1]]
    far = [agg(M, 3, 60.0 * (1 + 1e-7), 10.0, 30.0, 20.0, M + 50_000), GOOD[1]]
    assert report(close).violations() == []
    assert list(report(far).mismatched.values()) == [[f"sum 60.0 vs {60.0 * (1 + 1e-7)!r}"]]


def test_detects_a_window_short_of_a_reading() -> None:
    short = [agg(M, 2, 50.0, 20.0, 30.0, 20.0, M + 50_000), GOOD[1]]  # "a" (10.0) never counted
    rep = report(short)
    assert rep.mismatched == {("water_level", "01", "station=s1", M): ["count 3 vs 2", "sum 60.0 vs 50.0",
                                                                        "min 10.0 vs 20.0"]}
    assert (rep.missing_readings, rep.excess_readings) == (1, 0)
    assert rep.violations()[0].startswith("agg: 1 series-minutes differ from the raw recomputation (agg short by 1")


def test_detects_a_wrong_last_and_a_reading_counted_twice() -> None:
    wrong_last = [agg(M, 3, 60.0, 10.0, 30.0, 30.0, M + 20_000), GOOD[1]]  # an older partial replaced the newer
    assert report(wrong_last).mismatched == {("water_level", "01", "station=s1", M): ["last [20.0] vs [30.0]"]}
    doubled = [agg(M, 4, 70.0, 10.0, 30.0, 20.0, M + 50_000), GOOD[1]]
    rep = report(doubled)
    assert (rep.missing_readings, rep.excess_readings, len(rep.mismatched)) == (0, 1, 1)


def test_a_tie_on_the_latest_time_accepts_either_value() -> None:
    tied = [raw("a", M + 1_000, 10.0), raw("b", M + 1_000, 30.0)]
    for last in (10.0, 30.0):
        assert report([agg(M, 2, 40.0, 10.0, 30.0, last, M + 1_000)], tied).violations() == []
    assert report([agg(M, 2, 40.0, 10.0, 30.0, 20.0, M + 1_000)], tied).mismatched


def test_detects_a_missing_and_an_excess_series_minute() -> None:
    other = ("hotline_calls", "79", "line=113")
    rep = report([GOOD[0], agg(M, 1, 1.0, 1.0, 1.0, 1.0, M + 1, series=other)])
    assert rep.missing_minutes == [("water_level", "01", "station=s1", M + 60_000)]
    assert rep.excess_minutes == [("hotline_calls", "79", "line=113", M)]
    assert (rep.missing_readings, rep.excess_readings, rep.bad_minutes) == (1, 1, 2)
    assert len(rep.violations()) == 2


# --- 3. late readings ----------------------------------------------------------------------------------------------

def test_detects_a_falsely_late_reading() -> None:
    rep = check_late([{"event_id": "late-1", "status": "amended"}, {"event_id": "on-time-7", "status": "amended"}],
                     {"late-1", "late-2"}, has_status=True)
    assert rep.falsely_late == ["on-time-7"] and rep.not_amended == {}
    assert rep.violations() == ["late: 1 readings counted late though on time when published: on-time-7"]


def test_a_deliberately_late_reading_within_the_horizon_must_be_amended() -> None:
    rows = [{"event_id": "late-1", "status": "too_late"}, {"event_id": "late-2", "status": "amended"}]
    rep = check_late(rows, {"late-1", "late-2"}, has_status=True)
    assert rep.not_amended == {"late-1": "too_late"} and len(rep.violations()) == 1
    skipped = check_late([{"event_id": "late-1"}], {"late-1"}, has_status=False)
    assert skipped.violations() == [] and not skipped.status_checked


# --- 4. alerts -----------------------------------------------------------------------------------------------------

FP = "chaos_level|water_level|01|station=s1"
EXPECTED = [ExpectedEvent(FP, 1, "firing", "firing"), ExpectedEvent(FP, 2, "resolved", "resolved")]


def ev(seq: int, event: str, state: str | None = None, fp: str = FP) -> dict[str, Any]:
    return {"alert_id": "x", "fingerprint": fp, "seq": seq, "event": event, "state": state or event}


def test_alert_events_exactly_as_expected_even_with_identical_copies() -> None:
    rep = check_alerts(EXPECTED, [ev(1, "firing"), ev(2, "resolved"), ev(2, "resolved")])  # a replayed insert
    assert rep.violations() == [] and rep.count == 0


def test_detects_a_doubled_alert_event() -> None:
    rep = check_alerts(EXPECTED, [ev(1, "firing"), ev(2, "resolved"), ev(3, "firing"), ev(4, "resolved")])
    assert rep.unexpected == [f"{FP}#3 firing", f"{FP}#4 resolved"]
    assert rep.doubled == [f"{FP} firing×2 (expected 1)", f"{FP} resolved×2 (expected 1)"]
    assert rep.count == 2 and len(rep.violations()) == 2


def test_detects_a_missing_a_wrong_and_a_conflicting_alert_event() -> None:
    missing = check_alerts(EXPECTED, [ev(1, "firing")])
    assert missing.missing == [EXPECTED[1]] and missing.count == 1
    wrong = check_alerts(EXPECTED, [ev(1, "firing"), ev(2, "firing")])  # seq 2 says firing again
    assert wrong.wrong == {EXPECTED[1]: ["firing/firing"]}
    conflict = check_alerts(EXPECTED, [ev(1, "firing"), ev(2, "resolved"), ev(2, "repeat", "firing")])
    assert conflict.conflicting == [f"{FP}#2: [('repeat', 'firing'), ('resolved', 'resolved')]"]
    assert conflict.count == 1


def test_an_alert_nobody_expected() -> None:
    rep = check_alerts(EXPECTED, [ev(1, "firing"), ev(2, "resolved"), ev(1, "firing", fp="chaos_level|x|02|")])
    assert rep.unexpected == ["chaos_level|x|02|#1 firing"] and rep.doubled == []


# --- 5. notifications ------------------------------------------------------------------------------------------------

def hit(seq: int, sub: str = "sub-1", alert_id: str = "a1") -> tuple[str, dict[str, Any]]:
    return f"{alert_id}:{seq}:{sub}", {"alert_id": alert_id, "fingerprint": FP, "seq": seq}


def test_every_expected_notification_at_least_once_with_one_key() -> None:
    rep = check_notifications(EXPECTED, [hit(1), hit(2), hit(2)])  # a delivery in flight at a kill, same key
    assert rep.violations() == [] and rep.redelivered == 1 and rep.requests == 3


def test_detects_a_missing_notification_and_two_keys_for_one_event() -> None:
    rep = check_notifications(EXPECTED, [hit(1), hit(1, alert_id="other")])
    assert rep.missing == [EXPECTED[1]]
    assert rep.multi_key == [f"{FP}#1: ['a1:1:sub-1', 'other:1:sub-1']"]
    assert rep.count == 2 and len(rep.violations()) == 2


def test_a_missing_series_minute_is_explained_by_what_the_topics_and_the_sink_say() -> None:
    """Never emitted, emitted and still waiting in the sink, emitted and neither stored nor waiting."""
    import json

    def window(province: str, max_offset: int) -> dict[str, Any]:
        return {"topic": "agg.1m", "partition": 0, "offset": max_offset, "key": province,
                "value": json.dumps({"feed": "f", "province": province, "dims_key": "", "window_start": 60_000,
                                     "source_partition": 1, "max_offset": max_offset, "count": 2})}

    topics = {"agg.1m": [window("02", 7), window("03", 9)],
              "app-windows-changelog": [{"topic": "app-windows-changelog", "partition": 1, "offset": 4,
                                         "key": "w|120000|feeds.f|1|f|01||60000", "value": "[2,1,1,1,1,0,5,{}]"}]}
    waiting = [{"window": ["f", "02", "", 60_000, 1], "topic": "feeds.f", "max_offset": 7, "stored_through": 3}]
    out = explain_missing([("f", "01", "", 60_000), ("f", "02", "", 60_000), ("f", "03", "", 60_000)],
                          topics, waiting)
    assert out["verdicts"] == {"never emitted: still open in the worker's changelog (not closed yet)": 1,
                               "emitted, sink still waiting for its raw readings": 1,
                               "emitted on agg.1m, not stored, not waiting": 1}
    first = out["examples"][0]
    assert first["series_minute"] == "f|01||60000" and first["changelog"] == ["1@4:count=2"]
