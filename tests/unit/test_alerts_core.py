"""The alerter's core on plain data: live vs closed windows, commands (rules hot reload, silences,
acks), data quality from dead letters, the effective rule set, and snapshot round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from controlroom.alerts.core import AlertingCore
from controlroom.alerts.rules import effective_rule_docs, read_rule_docs
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
