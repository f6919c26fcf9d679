"""The alerter's core on plain data: live vs closed windows, commands (rules hot reload, silences,
acks), data quality from dead letters, the effective rule set, and snapshot round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from controlroom.alerts.core import AlertingCore
from controlroom.alerts.inhibit import read_inhibit_rules
from controlroom.alerts.rules import effective_rule_docs, load_default_rules, read_rule_docs
from controlroom.alerts.subscriptions import matches, parse_subscription
from controlroom.catalog import default_catalog
from controlroom.schema import alert_id_of, control_message, window_message
from streams.live import LiveThrottle
from streams.windows import ClosedWindow, WindowAgg

ROOT = Path(__file__).resolve().parents[2]

T0 = 1_767_225_600_000
MIN = 60_000
CAT = default_catalog()
WATER = {"id": "wl", "version": 1, "type": "threshold", "feed": "water_level", "severity": "warning",
         "repeat_interval_s": 60, "params": {"metric": "max", "above": 500}}
QUALITY = {"id": "dq", "version": 1, "type": "data_quality", "feed": "hotline_calls", "severity": "warning",
           "params": {"limit_pct": 10, "period_s": 600, "min_total": 4, "count": "rejected"}}


def core(*docs: dict[str, Any]) -> AlertingCore:
    return AlertingCore(CAT, list(docs or [WATER]), grafana_url="http://grafana:3000")


def window(value: float, start: int = T0, province: str = "01", count: int = 1) -> dict[str, Any]:
    return window_message(feed="water_level", province=province, dims={"station": "s1"}, window_start_ms=start,
                          window_s=60, count=count, total=value * count, vmin=value, vmax=value, last=value,
                          last_ts_ms=start + 1000, closed_ms=start + 61_000, source_partition=0)


def test_live_window_fires_and_a_stale_closed_window_does_not_flap() -> None:
    c = core()
    [fired] = c.on_live(window(600))
    assert (fired["event"], fired["event_at"], fired["seq"]) == ("firing", T0 + 1000, 1)
    assert fired["link"].startswith("http://grafana:3000/d/controlroom-feed-explorer/feed-explorer?var-feed=water_level")
    # the link's board and variables are the generated feed explorer's own
    board = orjson.loads((ROOT / "grafana" / "dashboards" / "feed-explorer.json").read_bytes())
    link = urlsplit(fired["link"])
    assert link.path == f"/d/{board['uid']}/feed-explorer"
    variables = {k.removeprefix("var-"): v for k, v in parse_qsl(link.query) if k.startswith("var-")}
    assert variables == {"feed": "water_level", "province": "01", "dims": "station=s1"}
    assert set(variables) == {v["name"] for v in board["templating"]["list"]}
    [resolved] = c.on_live(window(300, start=T0 + MIN))  # next minute, below: resolved live
    assert resolved["event"] == "resolved"
    assert c.on_closed(window(600)) == []  # the first minute closes late: judged already, no re-fire
    assert c.on_closed(window(300, start=T0 + MIN)) == []


def test_rule_put_applies_at_once_and_alerts_carry_the_new_version() -> None:
    c = core()
    c.on_live(window(600))
    events = c.on_control(control_message("rule.put", by="ops", at_ms=T0 + 5000,
                                          rule={**WATER, "version": 2, "params": {"metric": "max", "above": 700}}))
    assert events == []  # same series still matched: the alert stays until judged again
    [resolved] = c.on_live(window(650, start=T0 + MIN))
    assert resolved["event"] == "resolved" and resolved["rule_version"] == 2
    [fired] = c.on_live(window(750, start=T0 + 2 * MIN))
    assert fired["rule_version"] == 2


def test_rule_delete_resolves_its_open_alerts() -> None:
    c = core()
    c.on_live(window(600))
    [gone] = c.on_control(control_message("rule.delete", by="ops", at_ms=T0 + 5000, rule_id="wl", version=2))
    assert (gone["event"], gone["state"]) == ("resolved", "resolved")
    assert c.engine.rules == {}


def test_ack_applies_to_the_open_episode_only() -> None:
    c = core()
    [fired] = c.on_live(window(600))
    aid = fired["alert_id"]
    assert aid == alert_id_of(fired["fingerprint"])
    old_ack = control_message("ack", by="ops", at_ms=T0 - 1, alert_id=aid, comment="old")
    assert c.on_control(old_ack) == []  # issued before this episode began
    [acked] = c.on_control(control_message("ack", by="ops", at_ms=T0 + 2000, alert_id=aid, comment="on it"))
    assert acked["event"] == "acknowledged" and acked["ack"]["by"] == "ops"


def test_silence_commands_and_bad_commands_never_raise() -> None:
    c = core()
    put = control_message("silence.put", by="ops", at_ms=T0, silence={
        "id": "s1", "matchers": {"province": "01"}, "starts_ms": T0, "ends_ms": T0 + 10 * MIN})
    assert c.on_control(put) == []
    [fired] = c.on_live(window(600))
    assert fired["silenced"] is True
    assert c.on_control({"kind": "silence.put", "silence": {"matchers": {}}}) == []  # logged, skipped
    assert c.on_control({"kind": "ack"}) == []
    c.on_control(control_message("silence.delete", by="ops", at_ms=T0, silence_id="s1"))
    [repeat] = c.tick(T0 + 2000)
    assert (repeat["event"], repeat["silenced"]) == ("repeat", False)


def test_data_quality_counts_dead_letters_and_closed_windows() -> None:
    c = core(QUALITY)
    dead = {"source_topic": "feeds.hotline_calls", "received_ms": T0 + 5000, "payload": "{}"}
    assert c.on_dead_letter(dead) == [] and c.on_dead_letter(dead) == [] and c.on_dead_letter(dead) == []
    [fired] = c.on_dead_letter(dead)  # 4 of 4 rejected
    assert fired["evidence"]["share_pct"] == 100.0 and fired["province"] == ""
    hot = window_message(feed="hotline_calls", province="31", dims={"line": "113"}, window_start_ms=T0,
                         window_s=60, count=96, total=96.0, vmin=1, vmax=1, last=1, last_ts_ms=T0,
                         closed_ms=T0 + 61_000, source_partition=0)
    [resolved] = c.on_closed(hot)  # 4 of 100
    assert resolved["event"] == "resolved"
    assert c.on_dead_letter({"source_topic": "feeds.nope", "payload": "x"}) == []  # no feed to charge


def test_snapshot_round_trip_carries_on_identically() -> None:
    a, b = core(), core()
    a.on_live(window(600))
    a.on_control(control_message("rule.put", by="ops", at_ms=T0, rule={**WATER, "version": 3}))
    b.restore(a.snapshot({"agg.live:0": 42}))
    assert b.stored == a.stored and b.engine.rules["wl"].version == 3
    ea, eb = a.on_live(window(300, start=T0 + MIN)), b.on_live(window(300, start=T0 + MIN))
    assert ea == eb and ea[0]["event"] == "resolved" and ea[0]["seq"] == 2


def test_effective_rules_higher_version_wins_and_ties_go_to_the_api() -> None:
    base = [WATER]
    assert effective_rule_docs(base, {})["wl"]["version"] == 1
    assert effective_rule_docs(base, {"wl": {"version": 1, "doc": {**WATER, "severity": "info"}}})["wl"][
        "severity"] == "info"
    assert "wl" not in effective_rule_docs(base, {"wl": {"version": 2, "doc": None}})
    assert effective_rule_docs([{**WATER, "version": 5}], {"wl": {"version": 2, "doc": None}})["wl"]["version"] == 5
    shipped = read_rule_docs(None, CAT)
    assert len(shipped) >= 16 and all({"id", "version", "type"} <= set(d) for d in shipped)


def test_live_throttle_sends_first_touch_at_once_then_at_most_once_per_interval() -> None:
    w = ClosedWindow("water_level", "01", {}, T0, WindowAgg.first(1.0, T0, 0))
    t = LiveThrottle(1000)
    t.offer(b"k", 0, w)
    assert t.take(T0) == [(0, w)]
    t.offer(b"k", 0, w)
    assert t.take(T0 + 500) == []  # held back…
    assert t.take(T0 + 1000) == [(0, w)]  # …and sent when the interval is over
    higher = ClosedWindow("water_level", "01", {}, T0, WindowAgg(2, 3.0, 1.0, 2.0, 2.0, T0 + 1, 1))
    t.offer(b"k", 0, higher)
    assert t.take(T0 + 1100) == [(0, higher)]  # a new maximum goes out at once, interval or not
    t.offer(b"k", 0, w)
    t.forget(b"k")  # the window closed: agg.1m carries it
    assert t.take(T0 + 5000) == []


def test_live_throttle_a_window_offered_after_its_interval_goes_at_once() -> None:
    """take() looks only at windows touched since, or whose interval just ended: one not touched when its interval
    ended is due as soon as it is touched again; others wait their own interval."""
    a = ClosedWindow("water_level", "01", {}, T0, WindowAgg.first(1.0, T0, 0))
    b = ClosedWindow("water_level", "02", {}, T0, WindowAgg.first(1.0, T0, 0))
    t = LiveThrottle(1000)
    t.offer(b"a", 0, a)
    assert t.take(T0) == [(0, a)]
    t.offer(b"b", 1, b)
    assert t.take(T0 + 600) == [(1, b)]
    assert t.take(T0 + 1000) == []  # a's interval ended while nothing of it waited
    t.offer(b"a", 0, a)
    t.offer(b"b", 1, b)
    assert t.take(T0 + 1001) == [(0, a)]  # a at once; b only 1 s after it was sent
    assert t.take(T0 + 1600) == [(1, b)]
    t.offer(b"a", 0, a)
    t.forget(b"a")
    assert t.take(T0 + 5000) == []


def live(vmax: float, *, start: int = T0, last_ts: int, offset: int, partition: int = 7,
         topic: str = "feeds.water_level") -> dict[str, Any]:
    """An open window of water_level|52|station=s1 as a worker publishes it on agg.live."""
    return window_message(feed="water_level", province="52", dims={"station": "s1"}, window_start_ms=start,
                          window_s=60, count=5, total=vmax * 5, vmin=min(vmax, 150.0), vmax=vmax, last=150.0,
                          last_ts_ms=last_ts, closed_ms=last_ts + 50, source_partition=partition,
                          source_topic=topic, max_offset=offset)


def brief(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(e["event"], e["seq"]) for e in events]


def test_a_restarted_worker_republishing_an_older_state_of_the_window_opens_no_new_episode() -> None:
    """Chaos seed 1015: the spike (window [b-60, b)) fired live; the worker was killed before its changelog
    held the spike, restored the window without it and republished it as it re-read its backlog: first
    without the spike (resolved), then with it and, in the same agg.live batch, the next window (fired and
    resolved again in one message). An earlier state of a judged window is old news: one episode only."""
    c = core({**WATER, "id": "chaos_level", "repeat_interval_s": None, "provinces": ["14", "33", "52"],
              "dims": {"station": "s1"}, "params": {"metric": "max", "above": 600.0}})
    events = c.on_live(live(820.0, last_ts=T0 + 55_000, offset=120))  # the spike, at once: fires
    events += c.on_live(live(820.0, last_ts=T0 + 56_500, offset=131))  # the worker's last update before its kill
    # restarted: the window restored from an older changelog, rebuilt as the backlog is re-read
    events += c.on_live(live(250.0, last_ts=T0 + 53_900, offset=112))  # the spike not re-read yet
    b_events = c.on_live(live(820.0, last_ts=T0 + 56_500, offset=131))  # with the spike again (a repeat)
    # one agg.live message: the old window complete, then the first update of the next one
    b_events += c.on_live(live(820.0, last_ts=T0 + 59_300, offset=140))
    b_events += c.on_live(live(180.0, start=T0 + MIN, last_ts=T0 + MIN + 1_200, offset=143))
    events += b_events
    assert brief(events) == [("firing", 1), ("resolved", 2)]
    assert events[1]["event_at"] == T0 + MIN + 1_200  # resolved by the next window
    # the old window closes later: judged already (older than the newest), nothing again
    closed = {**live(820.0, last_ts=T0 + 59_300, offset=140), "closed_ms": T0 + MIN + 10_000}
    assert c.on_closed(closed) == []
    # after the newest window too, an older state of it is stale; the same state again says nothing new
    assert c.on_live(live(180.0, start=T0 + MIN, last_ts=T0 + MIN + 1_200, offset=143)) == []
    assert c.on_live(live(700.0, start=T0 + MIN, last_ts=T0 + MIN + 900, offset=141)) == []
    [again] = c.on_live(live(700.0, start=T0 + MIN, last_ts=T0 + MIN + 2_500, offset=150))  # a real new crossing
    assert (again["event"], again["seq"]) == ("firing", 3)


def test_an_older_state_without_offsets_is_told_by_its_last_reading_time() -> None:
    c = core()
    assert brief(c.on_live(window(600))) == [("firing", 1)]  # last_ts T0 + 1000
    older = {**window(300), "last_ts": T0 + 500}
    assert c.on_live(older) == []  # the same window as it stood before: not a resolve
    assert c.on_live(window(600)) == []  # the same state again: still firing, nothing new
    assert brief(c.on_live({**window(300), "last_ts": T0 + 1500})) == [("resolved", 2)]  # a later state: judged


def test_partials_from_other_source_partitions_are_not_stale() -> None:
    """A reading keyed by a legacy code (64 → 52) lands in another partition: its partial of the same window
    has its own offsets, and an older last reading time than the other partial does not make it stale."""
    c = core({**WATER, "repeat_interval_s": None, "params": {"metric": "max", "above": 600.0}})
    assert c.on_live(live(300.0, last_ts=T0 + 40_000, offset=900, partition=7)) == []
    [crossing] = c.on_live(live(950.0, last_ts=T0 + 20_000, offset=15, partition=3))
    assert (crossing["event"], crossing["value"]) == ("firing", 950.0)
    assert c.on_live(live(300.0, last_ts=T0 + 19_000, offset=14, partition=3)) == []  # that partial's older state


def test_a_snapshot_holding_window_starts_only_still_guards_older_windows() -> None:
    a = core()
    a.on_live(window(600, start=T0 + MIN))
    state = a.engine._state["wl"][1]
    state.update({k: v[0] for k, v in state.items()})  # the shape before partial progress was kept
    b = core()
    b.restore(a.snapshot({}))
    assert b.on_live(window(300)) == []  # an older window: stale
    assert brief(b.on_live(window(300, start=T0 + 2 * MIN))) == [("resolved", 2)]  # a newer one: judged


# --- inhibition and restarts --------------------------------------------------------------------------------

def notified(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(rule id, event) of what a subscriber to everything would hear."""
    sub = parse_subscription({"name": "all", "channel": "webhook", "target": "https://x.example/h"}, CAT)
    return [(e["rule_id"], e["event"]) for e in events if matches(sub, e, CAT)]


LOST = {"id": "lost", "version": 1, "type": "staleness", "feed": "water_level", "severity": "warning",
        "params": {"cadences": 3}}
DOWN = {"id": "feed_down", "version": 1, "type": "staleness", "feed": "water_level", "severity": "warning",
        "params": {"cadences": 3, "scope": "feed", "min_silent_pct": 50}}
SHIPPED_INHIBIT = read_inhibit_rules(None, CAT)


def test_the_shipped_inhibition_rules_load() -> None:
    assert [r.id for r in SHIPPED_INHIBIT] == ["feed_down_mutes_its_series", "critical_mutes_warning_on_the_series"]
    assert {r.id for r in load_default_rules(CAT)} >= {"feed_down", "connection_lost"}


def test_a_silent_feed_notifies_once_and_its_series_are_inhibited_then_heard_when_it_returns() -> None:
    c = AlertingCore(CAT, [LOST, DOWN], inhibit_rules=SHIPPED_INHIBIT)
    series = [(p, d) for f, p, d in CAT.iter_series() if f.id == "water_level"]
    c.tick(T0)
    events = c.tick(T0 + 200_000)  # nothing at all from 68 stations
    assert notified(events) == [("feed_down", "firing")]  # one notification, not 69
    [down] = [e for e in events if e["rule_id"] == "feed_down"]
    muted = [e for e in events if e["rule_id"] == "lost"]
    assert len(muted) == 68 and {e["inhibited_by"] for e in muted} == {down["alert_id"]}
    assert {(e["event"], e["state"]) for e in muted} == {("firing", "firing")}  # state and history kept
    assert c.tick(T0 + 30 * MIN) == []  # no repeats while inhibited (repeat_interval_s 3600 anyway)
    # 60 stations come back; 8 stay silent: the feed is no longer down, the 8 are heard now
    for province, dims in series[:60]:
        c.on_closed(window_message(feed="water_level", province=province, dims=dims, window_start_ms=T0 + 30 * MIN,
                                   window_s=60, count=1, total=300, vmin=300, vmax=300, last=300,
                                   last_ts_ms=T0 + 30 * MIN + 1000, closed_ms=T0 + 31 * MIN, source_partition=0))
    events = c.tick(T0 + 31 * MIN)
    assert sorted(set(notified(events))) == [("feed_down", "resolved"), ("lost", "repeat")]
    assert len([e for e in events if e["event"] == "repeat" and not e["inhibited_by"]]) == 8
    resolved = [e for e in events if e["rule_id"] == "lost" and e["event"] == "resolved"]
    assert len(resolved) == 60 and all(e["inhibited_by"] == down["alert_id"] for e in resolved)  # never heard of


def test_critical_mutes_the_warning_of_another_rule_on_the_same_series_until_it_resolves() -> None:
    warn = {**WATER, "id": "wl_warn", "params": {"metric": "max", "above": 400}}
    crit = {**WATER, "id": "wl_crit", "severity": "critical", "params": {"metric": "max", "above": 600}}
    c = AlertingCore(CAT, [warn, crit], inhibit_rules=SHIPPED_INHIBIT)
    events = c.on_live(window(700))
    assert [(e["rule_id"], e["inhibited_by"] is None) for e in events] == [("wl_crit", True), ("wl_warn", False)]
    assert notified(events) == [("wl_crit", "firing")]
    other = c.on_live(window(500, province="79"))  # another series: not muted
    assert notified(other) == [("wl_warn", "firing")]
    events = c.on_live(window(500, start=T0 + MIN))  # critical over, the warning still holds: heard now
    assert notified(events) == [("wl_crit", "resolved"), ("wl_warn", "repeat")]


def test_an_alert_muted_after_it_fired_says_so_and_is_heard_again_when_the_source_ends() -> None:
    warn = {**WATER, "id": "wl_warn", "params": {"metric": "max", "above": 400}}
    crit = {**WATER, "id": "wl_crit", "severity": "critical", "params": {"metric": "max", "above": 600}}
    c = AlertingCore(CAT, [warn, crit], inhibit_rules=SHIPPED_INHIBIT)
    assert notified(c.on_live(window(500))) == [("wl_warn", "firing")]
    events = c.on_live(window(700, start=T0 + MIN))
    assert [(e["rule_id"], e["event"]) for e in events] == [("wl_crit", "firing"), ("wl_warn", "inhibited")]
    assert events[1]["inhibited_by"] == events[0]["alert_id"] and notified(events) == [("wl_crit", "firing")]
    c.on_control(control_message("ack", by="ops", at_ms=T0 + MIN + 5000, alert_id=events[1]["alert_id"]))
    events = c.on_live(window(500, start=T0 + 2 * MIN))  # acknowledged: not repeated, just no longer muted
    assert [(e["rule_id"], e["event"]) for e in events] == [("wl_crit", "resolved"), ("wl_warn", "uninhibited")]


def test_a_restart_after_downtime_fires_no_staleness_for_series_that_report_and_keeps_what_was_firing() -> None:
    c = AlertingCore(CAT, [LOST, DOWN], inhibit_rules=SHIPPED_INHIBIT)
    c.resumed(T0)
    c.on_closed(window(300, start=T0 + MIN))  # 01/s1 reports; the 67 others never do: they and the feed fire
    fired = c.tick(T0 + 200_000)
    assert len(fired) == 68 and not [e for e in fired if e["province"] == "01" and e["dims"] == {"station": "s1"}]
    state = c.snapshot({})
    back = T0 + 20 * MIN  # then Control Room is down for 20 minutes (01/s1 last heard at T0 + 61 s)
    again = AlertingCore(CAT, [LOST, DOWN], inhibit_rules=SHIPPED_INHIBIT)
    again.restore(state)
    again.resumed(back)
    assert again.tick(back) == [] and again.tick(back + 170_000) == []  # no storm, no flapping
    again.on_closed(window(310, start=back + 60_000))
    assert again.tick(back + 200_000) == []  # 01/s1 within its limit of the restart: never blamed
    [lost] = [e for e in fired if e["province"] == "79" and e["dims"] == {"station": "s1"}]
    again.on_closed(window(310, start=back + 60_000, province="79"))
    [resolved] = again.tick(back + 201_000)  # a reading, not the restart, ends an alert that was firing
    assert (resolved["alert_id"], resolved["event"]) == (lost["alert_id"], "resolved")
