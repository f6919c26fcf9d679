"""Alert rules: parsing with errors that name the field, and every rule type firing and resolving on
crafted windows (plain data, no Faust, no Kafka)."""

from __future__ import annotations

from typing import Any

import pytest

from controlroom.alerts.evaluate import Condition, RuleEngine
from controlroom.alerts.rules import RULE_TYPES, RuleError, load_default_rules, parse_rules
from controlroom.catalog import Catalog, default_catalog
from controlroom.schema import window_message

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z = 07:00 in Vietnam (UTC+7)
CAT: Catalog = default_catalog()


def win(feed: str, province: str, dims: dict[str, str], ws: int, *values: float) -> dict[str, Any]:
    return window_message(feed=feed, province=province, dims=dims, window_start_ms=ws, window_s=60,
                          count=len(values), total=float(sum(values)), vmin=min(values), vmax=max(values),
                          last=values[-1], last_ts_ms=ws + 59_000, closed_ms=ws + 70_000, source_partition=0)


def engine(*rules: dict[str, Any]) -> RuleEngine:
    return RuleEngine(parse_rules({"rules": list(rules)}, CAT), CAT)


def brief(conds: list[Condition]) -> list[tuple[str, bool, float | None, str, int]]:
    return [(c.fingerprint, c.active, c.value, c.severity, c.at_ms) for c in conds]


WATER = {
    "id": "wl", "version": 3, "type": "threshold", "feed": "water_level", "severity": "warning",
    "params": {"metric": "max", "levels": [{"name": "I", "above": 400, "severity": "info"},
                                           {"name": "II", "above": 450, "severity": "warning"},
                                           {"name": "III", "above": 500, "severity": "critical"}]},
    "overrides": {"01|station=s1": {"levels": [{"name": "I", "above": 950, "severity": "info"},
                                               {"name": "II", "above": 1050, "severity": "warning"}]}},
    "summary": {"vi": "Mực nước {province_vi} {dims}: {value:.0f} cm vượt báo động {level}",
                "en": "Water level {province_en} {dims}: {value:.0f} cm above alarm level {level} ({threshold:g} cm)"},
}
S1 = {"station": "s1"}


# --- rules as data ---------------------------------------------------------------------------------

def test_default_rules_load_and_cover_every_type() -> None:
    rules = load_default_rules(CAT)
    assert {r.type for r in rules} == set(RULE_TYPES)
    ids = {r.id for r in rules}
    assert {"connection_lost", "data_quality", "water_level_alarm", "pm25_high", "hotline_calls_surge",
            "citizen_feedback_surge", "traffic_incidents_surge", "epidemic_cases_surge", "fx_usd_vnd_move",
            "gold_price_move", "vn_index_move", "dvc_on_time_share", "report_on_time_share",
            "gov_tasks_overdue_rising", "public_investment_behind_plan"} <= ids
    water = next(r for r in rules if r.id == "water_level_alarm")
    assert [lv["name"] for lv in water.params["levels"]] == ["I", "II", "III"]
    assert water.params_for("01", "station=s1")["levels"][2]["value"] == 1150
    assert water.params_for("04", "station=s1")["levels"][2]["value"] == 500  # no override: the rule's


def test_default_rules_water_alarm_and_staleness_of_every_series() -> None:
    e = RuleEngine(load_default_rules(CAT), CAT)
    [c] = e.on_window(win("water_level", "01", S1, T0, 1100, 1160))
    assert (c.fingerprint, c.active, c.severity) == ("water_level_alarm|water_level|01|station=s1", True, "critical")
    assert c.summary_vi == "Mực nước Thành phố Hà Nội trạm station=s1: 1160 cm vượt báo động III (1150 cm)"
    assert [c for c in e.tick(T0) if c.rule.type != "report_deadline"] == []  # reports: test_report_deadlines
    fired = e.tick(T0 + 3_600_000)  # an hour with nothing more at all: every series the catalog expects
    lost = [c for c in fired if c.rule.id == "connection_lost"]
    assert len(lost) == len(list(CAT.iter_series())) == 2146
    # and every feed of more than one series as a whole (province "": one alert per feed)
    down = {c.fingerprint for c in fired if c.rule.id == "feed_down"}
    assert down == {f"feed_down|{f.id}||" for f in CAT.feeds.values()
                    if len(CAT.series_provinces(f)) * len(f.dim_combinations()) >= 2}
    # and every body's contract: none of its series reporting
    breached = {c.fingerprint for c in fired if c.rule.id == "contract_breach"}
    assert len(breached) == len(CAT.contracts) == 58
    assert "contract_breach|water_level||agency=hydromet" in breached
    assert "contract_breach|citizen_feedback|79|agency=ioc_79" in breached  # a center's: its province
    assert len(fired) == len(lost) + len(down) + len(breached)


@pytest.mark.parametrize(("change", "message"), [
    ({"params": {"metric": "max", "above": "high"}}, "rules[0].params.above: must be a number"),
    ({"feed": "nope"}, "rules[0].feed: unknown feed 'nope'"),
    ({"type": "magic"},
     "rules[0].type: must be one of threshold, rate_of_change, anomaly, staleness, data_quality, target, "
     "report_deadline, contract"),
    ({"severity": "urgent"}, "rules[0].severity: must be one of info, warning, critical"),
    ({"version": 0}, "rules[0].version: must be >= 1"),
    ({"for_s": -1}, "rules[0].for_s: must be >= 0"),
    ({"dims": {"station": "s9"}}, "rules[0].dims.station: must be one of s1, s2"),
    ({"dims": {"river": "red"}}, "rules[0].dims.river: feed water_level has no dim 'river' (dims: ['station'])"),
    ({"provinces": ["99"]}, "rules[0].provinces[0]: unknown province code '99'"),
    ({"overrides": {"01|station=s1": {"levels": [{"name": "I", "above": "x"}]}}},
     "rules[0].overrides['01|station=s1'].levels[0].above: must be a number"),
    ({"overrides": {"nowhere": {"above": 1}}},
     "rules[0].overrides['nowhere']: key must be '<province code>|<dims key>', e.g. '01|station=s1'"),
    ({"params": {"levels": [{"above": 1}, {"below": 0}]}},
     "rules[0].params.levels: all levels must use the same direction (above or below)"),
    ({"params": {"above": 1, "below": 0}}, "rules[0].params: give exactly one of above, below, levels"),
    ({"params": {"above": 1, "metric": "median"}},
     "rules[0].params.metric: must be one of avg, sum, min, max, last, count"),
    ({"escalate_after_s": "soon"}, "rules[0].escalate_after_s: must be a number"),
    ({"agencies": ["nobody"]}, "rules[0].agencies[0]: unknown agency 'nobody'"),
    ({"agencies": "hydromet"}, "rules[0].agencies: must be a list of agency ids (controlroom/data/agencies.yaml)"),
])
def test_validation_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rules({"rules": [{**WATER, **change}]}, CAT)
    assert str(err.value) == message


@pytest.mark.parametrize(("rule", "message"), [
    ({"id": "x", "version": 1, "type": "rate_of_change", "feed": "gold_price", "severity": "info"},
     "rules[1].params.pct: is required"),
    ({"id": "x", "version": 1, "type": "target", "feed": "*", "severity": "info"},
     "rules[1].feed: a target rule needs one feed, not '*'"),
    ({"id": "x", "version": 1, "type": "target", "feed": "dvc_dossiers_resolved", "severity": "info",
      "params": {"kind": "ratio", "numerator": {"on_time": "maybe"}, "below_pct": 90}},
     "rules[1].params.numerator.on_time: must be one of true, false"),
    ({"id": "x", "version": 1, "type": "anomaly", "feed": "hotline_calls", "severity": "info",
      "params": {"alpha": 1.5}}, "rules[1].params.alpha: must be <= 1"),
    ({"id": "x", "version": 1, "type": "staleness", "feed": "*", "severity": "info", "params": {"cadence": 3}},
     "rules[1].params.cadence: unknown field (allowed: cadences, min_silence_s, scope, min_silent_pct, min_series)"),
    ({"id": "wl", "version": 1, "type": "staleness", "feed": "*", "severity": "info"},
     "rules[1].id: 'wl' is defined twice"),
    ({"version": 1, "type": "staleness", "feed": "*", "severity": "info"}, "rules[1].id: is required"),
    ({"id": "Bad|Id", "version": 1, "type": "staleness", "feed": "*", "severity": "info"},
     "rules[1].id: must be 1-80 chars of a-z, 0-9, '_', '.', '-' starting with a letter or digit"),
])
def test_validation_errors_in_a_later_rule(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rules({"rules": [WATER, rule]}, CAT)
    assert str(err.value) == message


def test_unknown_fields_and_placeholders_are_named() -> None:
    with pytest.raises(RuleError, match=r"^rules\[0\]\.thresold: unknown field \(allowed: id, version"):
        parse_rules({"rules": [{**WATER, "thresold": 3}]}, CAT)
    with pytest.raises(RuleError, match=r"^rules\[0\]\.summary\.en: unknown placeholder \{station\}"):
        parse_rules({"rules": [{**WATER, "summary": {"en": "{station} high"}}]}, CAT)
    with pytest.raises(RuleError, match=r"^rules: must be a list$"):
        parse_rules({"rules": {"id": "x"}}, CAT)


# --- threshold ---------------------------------------------------------------------------------------

def test_threshold_levels_fire_escalate_and_resolve() -> None:
    e = engine(WATER)
    fp = "wl|water_level|04|station=s1"
    assert e.on_window(win("water_level", "04", S1, T0, 380, 390)) == []  # below: nothing to say
    [c] = e.on_window(win("water_level", "04", S1, T0 + MIN, 420, 460))
    assert brief([c]) == [(fp, True, 460.0, "warning", T0 + 2 * MIN)]
    assert c.evidence["threshold"] == {"op": "above", "value": 450.0, "level": "II", "severity": "warning"}
    assert (c.evidence["rule_id"], c.evidence["rule_version"], c.evidence["window"]["max"]) == ("wl", 3, 460)
    assert c.summary_en == "Water level Cao Bang station=s1: 460 cm above alarm level II (450 cm)"
    assert brief(e.on_window(win("water_level", "04", S1, T0 + 2 * MIN, 510))) == [
        (fp, True, 510.0, "critical", T0 + 3 * MIN)]
    assert brief(e.on_window(win("water_level", "04", S1, T0 + 3 * MIN, 300))) == [
        (fp, False, 300.0, "warning", T0 + 4 * MIN)]
    assert e.on_window(win("water_level", "04", S1, T0 + 4 * MIN, 300)) == []  # resolved once, not again


def test_threshold_override_per_station() -> None:
    e = engine(WATER)
    [c1] = e.on_window(win("water_level", "01", S1, T0, 960))  # Hà Nội s1 has its own levels
    assert (c1.severity, c1.evidence["threshold"]["value"], c1.evidence["override"]) == ("info", 950.0, True)
    [c2] = e.on_window(win("water_level", "01", {"station": "s2"}, T0, 960))  # s2 uses the rule's
    assert (c2.severity, c2.evidence["threshold"]["value"], c2.evidence["override"]) == ("critical", 500.0, False)
    assert brief(e.on_window(win("water_level", "01", S1, T0 + MIN, 600))) == [
        ("wl|water_level|01|station=s1", False, 600.0, "warning", T0 + 2 * MIN)]  # 600 is below s1's level I


def test_threshold_below_and_filters() -> None:
    e = engine({"id": "low", "version": 1, "type": "threshold", "feed": "electricity_load", "severity": "info",
                "provinces": ["79"], "params": {"metric": "min", "below": 100}})
    assert e.on_window(win("electricity_load", "01", {}, T0, 50)) == []  # another province: not this rule's
    assert brief(e.on_window(win("electricity_load", "79", {}, T0, 120, 50))) == [
        ("low|electricity_load|79|", True, 50.0, "info", T0 + MIN)]


def test_a_rule_filtered_on_agency_fires_only_for_the_series_that_agency_supplies() -> None:
    # citizen reports come from each province's center: a rule for Hanoi's center sees only Hanoi
    e = engine({"id": "ioc01", "version": 1, "type": "threshold", "feed": "*", "severity": "warning",
                "agencies": ["ioc_01"], "params": {"metric": "sum", "above": 10}})
    assert e.on_window(win("citizen_feedback", "79", {"topic": "traffic"}, T0, 50)) == []  # ioc_79's
    assert e.on_window(win("hotline_calls", "01", {"line": "113"}, T0, 50)) == []  # hotlines' in Hanoi
    assert brief(e.on_window(win("citizen_feedback", "01", {"topic": "traffic"}, T0, 50))) == [
        ("ioc01|citizen_feedback|01|topic=traffic", True, 50.0, "warning", T0 + MIN)]
    # a central body supplies its feed in every province
    evn = engine({"id": "evn", "version": 1, "type": "threshold", "feed": "*", "severity": "info",
                  "agencies": ["evn_nldc"], "params": {"metric": "max", "above": 10}})
    assert len(evn.on_window(win("electricity_load", "79", {}, T0, 50))) == 1
    assert evn.on_window(win("water_level", "79", S1, T0, 50)) == []


# --- rate of change ------------------------------------------------------------------------------------

GOLD = {"id": "gold", "version": 1, "type": "rate_of_change", "feed": "gold_price", "severity": "warning",
        "params": {"metric": "last", "lookback_s": 900, "pct": 3}}
SELL = {"side": "sell"}


def test_rate_of_change_up_within_lookback() -> None:
    e = engine(GOLD)
    out: list[tuple[int, bool, float]] = []
    prices = [100_000_000.0] * 10 + [103_500_000.0] * 16
    for m, price in enumerate(prices):
        for c in e.on_window(win("gold_price", "00", SELL, T0 + m * MIN, price)):
            out.append((m, c.active, round(c.evidence.get("change_pct", 0.0), 6)))
            if m == 10:
                assert c.evidence["reference"] == 100_000_000.0
                assert c.evidence["reference_window_start_ms"] == T0
                # no template of its own: the default one
                assert c.summary_en == "gold: SJC gold price – National side=sell: 103,500,000 VND per tael"
    # active from the jump until the last 100 M window leaves the 15-minute lookback
    assert out == [(m, True, 3.5) for m in range(10, 25)] + [(25, False, 0.0)]


def test_rate_of_change_down_and_direction_filter() -> None:
    both = engine(GOLD)
    up_only = engine({**GOLD, "params": {**GOLD["params"], "direction": "up"}})
    for e in (both, up_only):
        e.on_window(win("gold_price", "00", SELL, T0, 100.0e6))
    assert brief(both.on_window(win("gold_price", "00", SELL, T0 + MIN, 96.0e6))) == [
        ("gold|gold_price|00|side=sell", True, 96.0e6, "warning", T0 + 2 * MIN)]
    assert up_only.on_window(win("gold_price", "00", SELL, T0 + MIN, 96.0e6)) == []


def test_rate_of_change_period_mode_for_sparse_counts() -> None:
    e = engine({"id": "overdue", "version": 1, "type": "rate_of_change", "feed": "gov_tasks", "severity": "warning",
                "dims": {"status": "overdue"},
                "params": {"metric": "sum", "mode": "period", "lookback_s": 600, "pct": 50, "direction": "up",
                           "min_base": 5}})
    od = {"status": "overdue"}
    out = []
    for m in range(30):
        for c in e.on_window(win("gov_tasks", "01", od, T0 + m * MIN, 1 if m < 20 else 3)):
            out.append((m, c.active, c.value, c.evidence["reference"], c.evidence["change_pct"]))
    # minute 22: the last 10 minutes hold 7 x 1 + 3 x 3 = 16 against 10 in the 10 minutes before: +60 %
    assert out[0] == (22, True, 16.0, 10.0, 60.0)
    assert [o[0] for o in out] == list(range(22, 30))
    assert e.on_window(win("gov_tasks", "01", {"status": "completed"}, T0, 100)) == []  # filtered by dims


# --- anomaly ----------------------------------------------------------------------------------------

HOTLINE = {"id": "hot", "version": 1, "type": "anomaly", "feed": "hotline_calls", "severity": "warning",
           "params": {"metric": "sum", "k": 4, "min_samples": 5, "alpha": 0.2, "min_sd": 1.0},
           "summary": {"en": "{value:.0f} calls, baseline {baseline:.1f}, z={z:.1f}"}}
LINE = {"line": "113"}


def test_anomaly_fires_with_baseline_deviation_and_method_then_resolves() -> None:
    e = engine(HOTLINE)
    for m, v in enumerate([10, 12, 10, 12, 10]):  # 5 samples of hour 07 (UTC+7): too few to judge
        assert e.on_window(win("hotline_calls", "01", LINE, T0 + m * MIN, v)) == []
    [c] = e.on_window(win("hotline_calls", "01", LINE, T0 + 5 * MIN, 20))
    assert (c.fingerprint, c.active, c.value) == ("hot|hotline_calls|01|line=113", True, 20.0)
    ev = c.evidence
    assert ev["baseline"] == pytest.approx(10.8)  # mean of the 5 samples
    assert ev["baseline_sd"] == 1.0  # sd 0.98 floored at min_sd
    assert ev["deviation"] == pytest.approx(9.2)
    assert ev["z"] == pytest.approx(9.2)
    assert (ev["k"], ev["samples"], ev["hour_bucket"], ev["alpha"]) == (4.0, 5, 7, 0.2)
    assert ev["method"] == ("z-score of sum against an EWMA (alpha=0.2) mean and variance of this series' windows "
                            "in hour 07 (UTC+7); sd floored at 1")
    assert c.summary_en == "20 calls, baseline 10.8, z=9.2"
    # the spike entered the baseline clipped to mean + 4 sd = 14.8: mean 11.6, variance 3.328
    [r] = e.on_window(win("hotline_calls", "01", LINE, T0 + 6 * MIN, 11))
    assert r.active is False
    assert r.evidence["baseline"] == pytest.approx(11.6)
    assert r.evidence["baseline_sd"] == pytest.approx(3.328 ** 0.5)


def test_anomaly_baseline_is_seasonal_by_hour_of_day() -> None:
    e = engine(HOTLINE)
    for m in range(6):
        e.on_window(win("hotline_calls", "01", LINE, T0 + m * MIN, 10))
    # two hours later (09:00 local) the bucket has no history: a big value is not judged
    assert e.on_window(win("hotline_calls", "01", LINE, T0 + 120 * MIN, 100)) == []
    # the next day at 07:xx the 07 bucket knows the series
    [c] = e.on_window(win("hotline_calls", "01", LINE, T0 + 24 * 60 * MIN, 100))
    assert (c.active, c.evidence["hour_bucket"], c.evidence["samples"]) == (True, 7, 6)


# --- staleness ----------------------------------------------------------------------------------------

STALE = {"id": "stale", "version": 1, "type": "staleness", "feed": "water_level", "severity": "warning",
         "provinces": ["01"], "dims": S1, "params": {"cadences": 3},
         "summary": {"vi": "Mất kết nối {feed_vi} {province_vi} {dims}: {silent_min:.0f} phút"}}


def test_staleness_fires_with_no_reading_at_all_and_resolves_when_data_returns() -> None:
    e = engine(STALE)
    fp = "stale|water_level|01|station=s1"
    assert e.tick(T0) == []  # the clock starts: a series never heard from is silent since now
    assert e.tick(T0 + 180_000) == []  # 3 cadences of 60 s: not yet more than that
    [c] = e.tick(T0 + 180_001)
    assert brief([c]) == [(fp, True, 180.001, "warning", T0 + 180_001)]
    assert c.evidence["limit_s"] == 180.0 and c.evidence["last_reading_ms"] is None
    assert e.tick(T0 + 300_000) == []  # still stale: reported once
    e.tick(T0 + 300_000)
    assert e.on_window(win("water_level", "01", S1, T0 + 5 * MIN, 350)) == []  # windows only record the time
    [r] = e.tick(T0 + 370_000)  # last reading at T0+5min+59 s: 11 s ago
    assert brief([r]) == [(fp, False, 11.0, "warning", T0 + 370_000)]
    assert brief(e.tick(T0 + 359_000 + 180_001)) == [(fp, True, 180.001, "warning", T0 + 539_001)]


def test_staleness_uses_each_feeds_cadence_and_a_floor() -> None:
    e = engine({"id": "lost", "version": 1, "type": "staleness", "feed": "*", "severity": "warning",
                "provinces": ["00"], "params": {"cadences": 3, "min_silence_s": 150}})
    e.tick(T0)
    # vn_index reports every 15 s: 3 cadences = 45 s, below the 150 s floor (a window closes after 60 s + lateness)
    assert [c.fingerprint for c in e.tick(T0 + 150_001)] == ["lost|vn_index|00|"]
    assert sorted(c.fingerprint for c in e.tick(T0 + 180_001)) == [
        "lost|fx_usd_vnd|00|", "lost|gold_price|00|side=buy", "lost|gold_price|00|side=sell"]


def test_staleness_only_for_owned_provinces() -> None:
    e = engine({**STALE, "provinces": [], "dims": {}})
    e.set_owned_provinces(["01", "79"])
    e.tick(T0)
    assert sorted(c.fingerprint for c in e.tick(T0 + 200_000)) == [
        "stale|water_level|01|station=s1", "stale|water_level|01|station=s2",
        "stale|water_level|79|station=s1", "stale|water_level|79|station=s2"]


# --- data quality ---------------------------------------------------------------------------------------

def test_data_quality_share_over_period() -> None:
    e = engine({"id": "dq", "version": 1, "type": "data_quality", "feed": "*", "severity": "warning",
                "params": {"limit_pct": 1, "period_s": 300, "min_total": 20}})
    assert e.on_quality("water_level", T0, 1000, 5, 0) == []  # 0.5 %
    [c] = e.on_quality("water_level", T0 + MIN, 1000, 20, 5)  # 30 of 2000 = 1.5 %
    assert brief([c]) == [("dq|water_level||", True, 1.5, "warning", T0 + 2 * MIN)]
    assert (c.evidence["total"], c.evidence["rejected"], c.evidence["late"]) == (2000, 25, 5)
    [r] = e.on_quality("water_level", T0 + 2 * MIN, 1000, 0, 0)  # 30 of 3000 = 1 %: not above the limit
    assert brief([r]) == [("dq|water_level||", False, 1.0, "warning", T0 + 3 * MIN)]
    assert e.on_quality("gold_price", T0, 10, 5, 0) == []  # 50 % of 10 readings: too few to judge
    # after 5 minutes the bad windows have left the period
    for m in range(3, 8):
        e.on_quality("fx_usd_vnd", T0 + m * MIN, 100, 0, 0)
    assert e.on_quality("water_level", T0 + 7 * MIN, 100, 2, 0)[0].value == 2.0


# --- target -------------------------------------------------------------------------------------------------

DVC = {"id": "ot", "version": 2, "type": "target", "feed": "dvc_dossiers_resolved", "severity": "warning",
       "params": {"kind": "ratio", "numerator": {"on_time": "true"}, "period_s": 600, "below_pct": 90,
                  "min_denominator": 50},
       "summary": {"en": "{ratio_pct:.1f} % on time (target {target_pct:g} %)"}}


def test_target_ratio_on_time_share() -> None:
    e = engine(DVC)
    t, f = {"on_time": "true"}, {"on_time": "false"}
    assert e.on_window(win("dvc_dossiers_resolved", "01", t, T0, 90)) == []
    assert e.on_window(win("dvc_dossiers_resolved", "01", f, T0, 10)) == []  # 90 %: not below
    assert e.on_window(win("dvc_dossiers_resolved", "01", t, T0 + MIN, 80)) == []  # 170 / 180
    [c] = e.on_window(win("dvc_dossiers_resolved", "01", f, T0 + MIN, 20))  # 170 / 200 = 85 %
    assert brief([c]) == [("ot|dvc_dossiers_resolved|01|", True, 85.0, "warning", T0 + 2 * MIN)]
    assert (c.evidence["numerator"], c.evidence["denominator"], c.evidence["windows"]) == (170.0, 200.0, 2)
    assert c.summary_en == "85.0 % on time (target 90 %)"
    [r] = e.on_window(win("dvc_dossiers_resolved", "01", t, T0 + 2 * MIN, 100))  # 270 / 300 = 90 %
    assert brief([r]) == [("ot|dvc_dossiers_resolved|01|", False, 90.0, "warning", T0 + 3 * MIN)]


def test_target_plan_curve() -> None:
    per_minute = 1000.0
    e = engine({"id": "plan", "version": 1, "type": "target", "feed": "public_investment_disbursed",
                "severity": "warning",
                "params": {"kind": "plan", "yearly_target": per_minute * 60 * 24 * 365, "tolerance_pct": 1}})
    # a sum that began 7 h into the (Vietnamese) year is not the year's: no verdict rather than a false alarm
    assert e.on_window(win("public_investment_disbursed", "01", {}, T0, 400_000)) == []
    e.seed_plan("plan", "01", {}, 2026, 0.0)  # the warehouse: nothing disbursed before T0
    # T0 + 1 min is 7 h 1 min into the Vietnamese year: plan 421 000, floor 416 790
    [c] = e.on_window(win("public_investment_disbursed", "01", {}, T0, 400_000))
    assert (c.active, c.value) == (True, 400_000.0)
    assert c.evidence["plan"] == pytest.approx(421_000.0)
    assert c.evidence["behind_pct"] == pytest.approx(100 * 21_000 / 421_000)
    [r] = e.on_window(win("public_investment_disbursed", "01", {}, T0 + MIN, 30_000))  # 430 000 vs 422 000
    assert (r.active, r.value) == (False, 430_000.0)
    e.seed_plan("plan", "79", {}, 2026, 1_000_000.0)  # history from the warehouse: ahead of plan
    assert e.on_window(win("public_investment_disbursed", "79", {}, T0, 1)) == []


# --- rule changes and persistence -------------------------------------------------------------------------

def _train(e: RuleEngine) -> None:
    for m, v in enumerate([10, 12, 10, 12, 10]):
        e.on_window(win("hotline_calls", "01", LINE, T0 + m * MIN, v))


def test_replace_rules_keeps_state_of_unchanged_rules_and_resolves_removed_ones() -> None:
    e = engine(HOTLINE, WATER)
    _train(e)
    e.on_window(win("water_level", "04", S1, T0, 470))
    v2 = {**HOTLINE, "version": 2, "params": {**HOTLINE["params"], "k": 3}}  # k does not shape the baseline
    gone = e.replace_rules(parse_rules({"rules": [v2]}, CAT), now_ms=T0 + 10 * MIN)
    assert brief(gone) == [("wl|water_level|04|station=s1", False, None, "warning", T0 + 10 * MIN)]
    assert gone[0].evidence["reason"] == "rule removed"
    [c] = e.on_window(win("hotline_calls", "01", LINE, T0 + 5 * MIN, 20))
    assert (c.active, c.evidence["rule_version"], c.evidence["samples"]) == (True, 2, 5)  # baseline kept
    v3 = {**v2, "version": 3, "params": {**v2["params"], "alpha": 0.1}}  # alpha shapes it: start again
    e.replace_rules(parse_rules({"rules": [v3]}, CAT))
    [r] = e.on_window(win("hotline_calls", "01", LINE, T0 + 6 * MIN, 20))
    assert (r.active, r.evidence["reason"]) == (False, "not enough data for a verdict")


def test_engine_snapshot_restore_gives_the_same_results() -> None:
    rules = [HOTLINE, GOLD, STALE, DVC]
    inputs: list[tuple[str, Any]] = [("tick", T0)]
    for m in range(20):
        inputs.append(("win", win("hotline_calls", "01", LINE, T0 + m * MIN, 10 + (m % 3) + (30 if m == 12 else 0))))
        inputs.append(("win", win("gold_price", "00", SELL, T0 + m * MIN, 100e6 * (1.04 if 8 <= m < 11 else 1))))
        inputs.append(("win", win("dvc_dossiers_resolved", "01", {"on_time": "true" if m % 2 else "false"},
                                  T0 + m * MIN, 30)))
        inputs.append(("tick", T0 + m * MIN + 90_000))

    def run(e: RuleEngine, items: list[tuple[str, Any]]) -> list[Any]:
        out: list[Any] = []
        for kind, arg in items:
            got = e.tick(arg) if kind == "tick" else e.on_window(arg)
            out.extend((c.fingerprint, c.active, c.value, c.at_ms, c.evidence) for c in got)
        return out

    full = run(engine(*rules), inputs)
    assert {f[0].split("|")[0] for f in full if f[1]} == {"hot", "gold", "stale", "ot"}  # every rule fired
    for cut in (10, 41, 60):
        a = engine(*rules)
        head = run(a, inputs[:cut])
        b = engine(*rules)
        b.restore(a.snapshot())
        assert head + run(b, inputs[cut:]) == full


# --- staleness across a restart -----------------------------------------------------------------------------

def restarted(e: RuleEngine, at: int) -> RuleEngine:
    """The engine as a restarted alerter has it: restored from the snapshot, caught up at `at`."""
    again = RuleEngine(e.rules.values(), CAT)
    again.restore(e.snapshot())
    again.resumed(at)
    return again


def test_a_restart_after_downtime_counts_silence_from_the_resume_not_from_the_last_reading() -> None:
    e = engine(STALE)
    fp = "stale|water_level|01|station=s1"
    e.tick(T0)
    e.on_window(win("water_level", "01", S1, T0, 350))  # last reading T0 + 59 s
    assert e.tick(T0 + 120_000) == []
    back = T0 + 30 * MIN  # down for half an hour: the series' silence is ours
    e = restarted(e, back)
    assert e.tick(back) == [] and e.tick(back + 180_000) == []  # its limit again, from the restart
    e.on_window(win("water_level", "01", S1, back + 60_000, 352))  # it reports within its cadences
    assert e.tick(back + 181_000) == [] and e.tick(back + 240_000) == []
    # a series that stays silent after the restart fires a limit after it, and the evidence says so
    e2 = restarted(engine(STALE), back)
    [c] = e2.tick(back + 180_001)
    assert brief([c]) == [(fp, True, 180.001, "warning", back + 180_001)]
    assert c.evidence["counted_from_ms"] == back
    assert c.evidence["counted_from"].startswith("silence counted from the restart at 2026-01-01T00:30:00")


def test_an_alert_firing_before_the_restart_stays_until_a_reading_arrives() -> None:
    e = engine(STALE)
    fp = "stale|water_level|01|station=s1"
    e.tick(T0)
    e.on_window(win("water_level", "01", S1, T0, 350))
    [c] = e.tick(T0 + 59_000 + 180_001)
    assert (c.fingerprint, c.active) == (fp, True)
    back = T0 + 30 * MIN
    e = restarted(e, back)
    for t in (back, back + 70_000, back + 200_000, back + 30 * MIN):
        assert e.tick(t) == []  # no resolve because of the restart (no flapping), no second firing
    e.on_window(win("water_level", "01", S1, back + 30 * MIN, 351))
    [r] = e.tick(back + 31 * MIN)
    assert (r.fingerprint, r.active) == (fp, False)


def test_after_a_restart_each_series_has_one_cadence_plus_lateness_before_it_is_judged() -> None:
    # a rule stricter than the feed's cadence (4 s of silence on a 60 s feed) waits 60 s + 10 s after a restart
    quick = {**STALE, "params": {"cadences": 0.01, "min_silence_s": 4}}
    e = engine(quick)
    back = T0 + 30 * MIN
    e.on_window(win("water_level", "01", S1, T0, 350))
    e = restarted(e, back)
    assert e.tick(back + 70_000) == []
    [c] = e.tick(back + 70_001)
    assert c.active and c.value == 70.001
    # in steady state (a reading after the restart) the rule's own limit applies
    e.on_window(win("water_level", "01", S1, back + 60_000, 350))  # last reading back + 119 s
    [r] = e.tick(back + 120_000)
    assert not r.active
    [again] = e.tick(back + 119_000 + 4_001)
    assert again.active


FEED_DOWN = {"id": "down", "version": 1, "type": "staleness", "feed": "water_level", "severity": "warning",
             "params": {"cadences": 3, "scope": "feed", "min_silent_pct": 50},
             "summary": {"en": "Feed down: {feed_en} – {silent_series:.0f} of {series_total:.0f} series silent"}}


def test_feed_scope_staleness_fires_once_for_the_feed_when_most_series_are_silent() -> None:
    e = engine(FEED_DOWN)
    series = [(f.id, p, d) for f, p, d in CAT.iter_series() if f.id == "water_level"]
    assert len(series) == 68
    e.tick(T0)
    for _, province, dims in series[:40]:  # 40 of 68 report
        e.on_window(win("water_level", province, dims, T0, 300))
    assert e.tick(T0 + 239_000) == []  # 28 of 68 silent: 41 %, not more than half
    for _, province, dims in series[:40]:
        e.on_window(win("water_level", province, dims, T0 + 4 * MIN, 300))
    for _, province, dims in series[:30]:  # then only 30 report: 38 of 68 silent for more than 180 s
        e.on_window(win("water_level", province, dims, T0 + 6 * MIN, 300))
    assert e.tick(T0 + 4 * MIN + 59_000 + 180_000) == []
    [c] = e.tick(T0 + 4 * MIN + 59_000 + 180_001)
    assert (c.fingerprint, c.active, c.province, c.dims) == ("down|water_level||", True, "", {})
    assert (c.evidence["series_silent"], c.evidence["series_judged"]) == (38, 68)
    assert len(c.evidence["silent_examples"]) == 10
    assert c.summary_en == "Feed down: River water level – 38 of 68 series silent"
    for _, province, dims in series:
        e.on_window(win("water_level", province, dims, T0 + 12 * MIN, 300))
    [r] = e.tick(T0 + 13 * MIN)
    assert (r.fingerprint, r.active) == ("down|water_level||", False)


def test_feed_scope_params_are_validated() -> None:
    with pytest.raises(RuleError, match=r"rules\[0\]\.params\.min_silent_pct: only for scope feed"):
        parse_rules({"rules": [{**STALE, "params": {"min_silent_pct": 50}}]}, CAT)
    with pytest.raises(RuleError, match=r"rules\[0\]\.params\.scope: must be one of series, feed"):
        parse_rules({"rules": [{**STALE, "params": {"scope": "province"}}]}, CAT)
