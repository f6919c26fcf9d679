"""Rule type `contract` (controlroom/alerts/contract_rule.py): a body's feed contract breached fires through the one
rule engine and lifecycle, labelled with the body, and resolves when its series report again."""

from __future__ import annotations

import re
from typing import Any

import pytest

from controlroom.alerts.core import AlertingCore
from controlroom.alerts.rules import RuleError, parse_rules
from controlroom.catalog import default_catalog
from controlroom.schema import series_key, window_message

CAT = default_catalog()
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MIN = 60_000
WATER = CAT.contracts["hydromet/water_level"]
RULE = {"id": "contract_breach", "version": 1, "type": "contract", "feed": "*", "severity": "warning", "for_s": 60,
        "params": {"min_completeness_pct": 90},
        "summary": {"en": "{agency_en} – {feed_en}: {share_pct:.0f} % of series reporting ({silent_series:.0f} "
                          "silent)"}}


def window(feed: str, province: str, dkey: str, ws: int) -> dict[str, Any]:
    dims = dict(kv.split("=") for kv in dkey.split(",")) if dkey else {}
    return dict(window_message(feed=feed, province=province, dims=dims, window_start_ms=ws, window_s=60, count=1,
                               total=1.0, vmin=1.0, vmax=1.0, last=1.0, last_ts_ms=ws + 30_000,
                               closed_ms=ws + 70_000, source_partition=0))


def core(rule: dict[str, Any]) -> AlertingCore:
    c = AlertingCore(CAT, [rule], grafana_url=None)
    c.resumed(T0)
    return c


def send(c: AlertingCore, series: list[tuple[str, str]], ws: int) -> list[Any]:
    return [e for province, dkey in series for e in c.on_closed(window(WATER.feed, province, dkey, ws))]  # type: ignore[arg-type]


def test_a_silent_part_of_a_contract_fires_once_held_and_resolves_when_it_reports_again() -> None:
    c = core({**RULE, "agencies": ["hydromet"]})
    series = list(WATER.series)
    kept = series[:61]  # 61 of 68 keep reporting: 89.7 % < 90 %
    events: list[Any] = []
    for m in range(10):
        events += send(c, series if m < 2 else kept, T0 + m * MIN)
        events += c.tick(T0 + (m + 1) * MIN + 15_000)
    fired = [e for e in events if e["event"] == "firing"]
    assert [e["event"] for e in events] == ["pending", "firing"]
    e = fired[0]
    assert (e["rule_id"], e["feed"], e["province"], e["dims"]) == ("contract_breach", "water_level", "",
                                                                   {"agency": "hydromet"})
    assert e["value"] == pytest.approx(100 * 61 / 68)
    assert e["summary_en"] == "Hydro-Meteorological Department – River water level: 90 % of series reporting (7 silent)"
    assert e["evidence"]["contract"]["series"] == 68 and e["evidence"]["series_silent"] == 7
    assert e["evidence"]["silent_examples"][0] == series_key(WATER.feed, *series[61])
    assert CAT.registry.supplier_of_alert(e) == "hydromet"  # the label subscriptions and Alertmanager group by
    # the silent stations report again: resolved
    back = send(c, series, T0 + 10 * MIN) + c.tick(T0 + 11 * MIN + 15_000)
    assert [(x["event"], x["state"]) for x in back] == [("resolved", "resolved")]


def test_a_rules_filters_pick_the_contracts_it_judges() -> None:
    hanoi = core({**RULE, "feed": "citizen_feedback", "provinces": ["01"]})
    events = hanoi.tick(T0 + 3_600_000)  # an hour of silence everywhere: only Hanoi's center's contract is judged
    assert [(e["feed"], e["province"], e["dims"]) for e in events] == [("citizen_feedback", "01",
                                                                       {"agency": "ioc_01"})]
    assert CAT.registry.supplier_of_alert(events[0]) == "ioc_01"
    assert core({**RULE, "agencies": ["sbv"]}).tick(T0 + 3_600_000)[0]["feed"] == "fx_usd_vnd"
    assert core(RULE).tick(T0 + 30_000) == []  # just resumed: no series judged before a cadence and the allowance


@pytest.mark.parametrize(("params", "message"), [
    ({"min_completeness_pct": 0}, "rules[0].params.min_completeness_pct: must be > 0"),
    ({"min_completeness_pct": 101}, "rules[0].params.min_completeness_pct: must be <= 100"),
    ({"cadences": "three"}, "rules[0].params.cadences: must be a number"),
    ({"limit_pct": 5}, "rules[0].params.limit_pct: unknown field"),
])
def test_a_bad_contract_rule_is_refused_naming_the_field(params: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError, match=re.escape(message)):
        parse_rules({"rules": [{**RULE, "params": params}]}, CAT)
