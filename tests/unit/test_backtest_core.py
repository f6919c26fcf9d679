"""The pure backtest (controlroom/alerts/backtest.py): synthetic stored windows through the live alerter's code."""

from __future__ import annotations

from typing import Any

import pytest

from controlroom.alerts.backtest import (
    RESOLUTIONS,
    BacktestError,
    parse_instant,
    plan_backtest,
    run_backtest,
)
from controlroom.alerts.rules import RuleError
from controlroom.catalog import Catalog

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z = 07:00 in Hà Nội
S1 = {"station": "s1"}

LEVELS = [{"name": "I", "above": 400, "severity": "info"}, {"name": "II", "above": 450, "severity": "warning"},
          {"name": "III", "above": 500, "severity": "critical"}]


def rule(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": "wl_test", "version": 3, "type": "threshold", "feed": "water_level",
                           "severity": "warning", "params": {"metric": "max", "levels": LEVELS},
                           "summary": {"en": "{province_en} {value:.0f} cm above {level}"}}
    doc.update(over)
    return doc


def row(minute: int, value: float, province: str = "79", dims: dict[str, str] = S1) -> dict[str, Any]:
    """A stored agg_1m row as the backtest's SQL reads it."""
    ws = T0 + minute * MIN
    return {"feed": "water_level", "province": province, "dims": dims, "part": 0, "ws_ms": ws,
            "count": 1, "sum": value, "min": value, "max": value, "last": value, "last_ts_ms": ws + 59_000}


def run(doc: dict[str, Any], rows: list[dict[str, Any]], catalog: Catalog, minutes: int = 90,
        current: dict[str, Any] | None = None) -> dict[str, Any]:
    plan = plan_backtest(doc, current, T0, T0 + minutes * MIN, catalog, resolution=RESOLUTIONS[0])
    return run_backtest(plan, rows, catalog)


def spans(episodes: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None, str]]:
    return [(e["province"], e["started"][11:16], e["fired"][11:16], e["ended"] and e["ended"][11:16],
             e["peak_severity"]) for e in episodes]


def levels(values: dict[int, float], minutes: int = 90, province: str = "79") -> list[dict[str, Any]]:
    return [row(m, values.get(m, 300.0), province) for m in range(minutes)]


def test_threshold_gives_exactly_the_expected_episodes(catalog: Catalog) -> None:
    # 79/s1: 420 at minutes 10-12, 520 at 13 (episode 1, peak critical); 460 at 30-31 (episode 2);
    # 01/s2 (its own level, an override: III above 1100): 1200 from minute 85 to the end (still open)
    rows = levels({10: 420, 11: 420, 12: 420, 13: 520, 30: 460, 31: 460})
    rows += [row(m, 1200.0 if m >= 85 else 950.0, "01", {"station": "s2"}) for m in range(90)]
    rows.sort(key=lambda r: r["ws_ms"])
    hanoi = {"01|station=s2": {"levels": [{"name": "III", "above": 1100, "severity": "critical"}]}}
    out = run(rule(overrides=hanoi), rows, catalog)
    # conditions are stamped with the window's end: the window 10:00-10:59 fires at 00:11
    assert spans(out["episodes"]) == [("79", "00:11", "00:11", "00:15", "critical"),
                                      ("79", "00:31", "00:31", "00:33", "warning"),
                                      ("01", "01:26", "01:26", None, "critical")]
    first = out["episodes"][0]
    assert first["fingerprint"] == "wl_test|water_level|79|station=s1" and first["dims"] == S1
    assert first["value"] == 420.0 and first["evidence"]["threshold"]["level"] == "I"  # evidence as it fired
    assert first["evidence"]["window"]["start_ms"] == T0 + 10 * MIN and first["evidence"]["rule_version"] == 3
    assert first["summary_en"].endswith(" 420 cm above I")
    assert out["alerts"] == {"total": 3, "pending_only": 0, "per_day": {"2026-01-01": 3},
                             "per_province": {"01": 1, "79": 2}, "per_severity": {"warning": 1, "critical": 2}}
    assert (out["windows"], out["series"], out["resolution"]["table"]) == (180, 2, "agg_1m")
    assert out["current"] is None and out["from"] == "2026-01-01T00:00:00.000Z"


def test_for_s_and_days_in_ho_chi_minh_time(catalog: Catalog) -> None:
    # for_s 120: a one-window crossing resolves while pending; a 4-window one fires 2 min after it began.
    # 17:00Z is already the next day in Hà Nội (00:00 +07:00)
    values = {5: 480.0} | {m: 480.0 for m in range(1020, 1024)}
    out = run(rule(for_s=120), levels(values, 1030), catalog, minutes=1030)
    assert spans(out["episodes"]) == [("79", "17:01", "17:03", "17:05", "warning")]
    assert out["alerts"]["pending_only"] == 1 and out["alerts"]["per_day"] == {"2026-01-02": 1}


def test_staleness_fires_over_a_gap_and_resolves_when_data_returns(catalog: Catalog) -> None:
    doc = {"id": "wl_silent", "version": 1, "type": "staleness", "feed": "water_level", "severity": "warning",
           "provinces": ["79"], "dims": S1, "params": {"cadences": 3}}
    rows = [row(m, 300.0) for m in range(90) if not 30 <= m < 60]  # nothing at all from 00:30 to 01:00
    out = run(doc, rows, catalog)
    # last reading 00:29:59; silent more than 3 × 60 s at the tick of 00:33; the window of 01:00 ends at 01:01
    assert spans(out["episodes"]) == [("79", "00:33", "00:33", "01:01", "warning")]
    assert out["episodes"][0]["evidence"]["last_reading_ms"] == T0 + 29 * MIN + 59_000
    silent_to_the_end = run(doc, [row(m, 300.0) for m in range(10)], catalog)
    assert spans(silent_to_the_end["episodes"]) == [("79", "00:13", "00:13", None, "warning")]


def test_difference_against_the_current_version(catalog: Catalog) -> None:
    rows = levels({10: 420, 11: 420, 30: 460, 31: 520, 50: 470})
    current = rule(version=2, params={"metric": "max", "above": 450})  # the rule in force: one level at 450
    out = run(rule(), rows, catalog, current=current)
    assert out["rule_version"] == 3 and out["current"]["rule_version"] == 2
    assert out["alerts"]["total"] == 3 and out["current"]["alerts"]["total"] == 2
    assert out["current"]["alerts"]["per_severity"] == {"warning": 2}
    diff = out["diff"]
    assert (diff["only_proposed"], diff["only_current"], diff["in_both"]) == (1, 0, 2)
    assert spans(diff["episodes_only_proposed"]) == [("79", "00:11", "00:11", "00:13", "info")]
    # the proposal without a version is numbered after the current one, as a PUT would
    unversioned = {k: v for k, v in rule().items() if k != "version"}
    assert run(unversioned, rows, catalog, current=current)["rule_version"] == 3
    # and the other way round: a stricter proposal drops episodes the current version raises; an episode that
    # starts later but overlaps one of the same series is the same alert
    stricter = run(rule(params={"metric": "max", "above": 480}), rows, catalog, current=rule(version=7))
    assert stricter["rule_version"] == 3 and stricter["current"]["rule_version"] == 7
    assert (stricter["diff"]["only_proposed"], stricter["diff"]["only_current"], stricter["diff"]["in_both"]) == (
        0, 2, 1)
    assert spans(stricter["diff"]["episodes_only_current"]) == [("79", "00:11", "00:11", "00:13", "info"),
                                                                 ("79", "00:51", "00:51", "00:52", "warning")]


def test_requests_are_validated_naming_the_field(catalog: Catalog) -> None:
    with pytest.raises(RuleError, match=r"^rule\.params\.levels\[0\]\.above: must be a number"):
        plan_backtest(rule(params={"levels": [{"above": "high"}]}), None, T0, T0 + MIN, catalog)
    with pytest.raises(RuleError, match=r"^rule\.feed: unknown feed 'nope'"):
        plan_backtest(rule(feed="nope"), None, T0, T0 + MIN, catalog)
    with pytest.raises(BacktestError, match="^to: must be after from"):
        plan_backtest(rule(), None, T0, T0, catalog)
    with pytest.raises(BacktestError, match="^to: the range is 401.0 days; a backtest covers at most 400 days"):
        plan_backtest(rule(), None, T0, T0 + 401 * 86_400_000, catalog)
    assert parse_instant(1767225600, "from") == parse_instant("2026-01-01T07:00:00+07:00", "from") == T0
    assert parse_instant("1767225600.5", "from") == T0 + 500 and parse_instant("2026-01-01", "from") == T0
    with pytest.raises(BacktestError, match="^from: not epoch seconds nor an ISO 8601 time: 'yesterday'"):
        parse_instant("yesterday", "from")
    for absurd in (7791836158368189.0, float("inf"), float("nan"), "-1e300", -5):  # found by schemathesis: a 500
        with pytest.raises(BacktestError, match="^to: epoch seconds between 946684800"):
            parse_instant(absurd, "to")
    with pytest.raises(BacktestError, match="^to: a time between 2000-01-01 and 2100-01-01"):
        parse_instant("2200-01-01", "to")


def test_the_resolution_follows_the_window_budget(catalog: Catalog) -> None:
    day = 86_400_000

    def table(doc: dict[str, Any], days: float) -> str:
        return plan_backtest(doc, None, T0, T0 + int(days * day), catalog).resolution.table

    assert table(rule(), 2) == "agg_1m"  # 68 series × 2,880 minutes = 195,840 windows
    assert table(rule(), 3) == "agg_1h"
    assert table(rule(), 200) == "agg_1d"
    one_station = rule(provinces=["79"])  # 2 series: a month of minutes is 86,400 windows
    assert table(one_station, 30) == "agg_1m"
    every_feed = {"id": "all_silent", "version": 1, "type": "staleness", "feed": "*", "severity": "warning"}
    assert table(every_feed, 0.05) == "agg_1m" and table(every_feed, 2) == "agg_1h"
    assert table(every_feed, 400) == "agg_1d"  # beyond the budget too: the coarsest there is
