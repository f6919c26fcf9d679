"""Alert lifecycle on plain data: pending → firing → resolved, ack, silences, repeats, escalation,
and a snapshot/restore that neither repeats nor misses an event."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from controlroom.alerts.evaluate import Condition
from controlroom.alerts.inhibit import Inhibitor, parse_inhibit_rules
from controlroom.alerts.lifecycle import AlertBook, LifecycleError
from controlroom.alerts.rules import Rule, parse_rules
from controlroom.catalog import default_catalog
from controlroom.schema import ALERT_EVENTS, alert_message, fingerprint

T0 = 1_767_225_600_000
S = 1000
MIN = 60 * S


def rule(*, for_s: float = 0, repeat: float | None = None, escalate: float | None = None,
         severity: str = "warning", version: int = 1, rid: str = "wl") -> Rule:
    return parse_rules({"rules": [{
        "id": rid, "version": version, "type": "threshold", "feed": "water_level", "severity": severity,
        "for_s": for_s, "repeat_interval_s": repeat, "escalate_after_s": escalate,
        "params": {"above": 400}}]}, default_catalog())[0]


def cond(r: Rule, active: bool, at: int, *, value: float = 450.0, severity: str | None = None,
         province: str = "01") -> Condition:
    dims = {"station": "s1"}
    return Condition(rule=r, fingerprint=fingerprint(r.id, "water_level", province, "station=s1"),
                     feed="water_level", province=province, dims=dims, active=active, value=value,
                     evidence={"rule_id": r.id, "rule_version": r.version, "value": value}, at_ms=at,
                     severity=severity or r.severity, summary_vi=f"vi {value:g}", summary_en=f"en {value:g}")


def ev(events: list[dict[str, Any]]) -> list[tuple[str, str, int, str, int, bool]]:
    return [(e["event"], e["state"], e["seq"], e["severity"], e["event_at"], e["silenced"]) for e in events]


FP = "wl|water_level|01|station=s1"


def test_fire_at_once_one_alert_per_fingerprint_then_resolve() -> None:
    r = rule()
    book = AlertBook()
    [first] = book.apply(cond(r, True, T0))
    assert ev([first]) == [("firing", "firing", 1, "warning", T0, False)]
    assert set(first) == set(alert_message(
        fingerprint_=FP, rule_id="", rule_version=0, rule_type="", severity="", event="", state="", seq=0,
        feed="", province="", dims={}, summary_vi="", summary_en="", value=None, evidence={}, starts_at_ms=0,
        ends_at_ms=None, event_at_ms=0)) | {"silenced", "inhibited_by"}
    assert first["alert_id"] == hashlib.sha256(FP.encode()).hexdigest()[:16]
    assert (first["fingerprint"], first["rule_version"], first["value"]) == (FP, 1, 450.0)
    assert first["summary_en"] == "en 450"
    assert (first["starts_at"], first["ends_at"], first["evidence"]["value"]) == (T0, None, 450.0)
    for i in range(1, 10):  # the condition stays true: still one alert, no new event
        assert book.apply(cond(r, True, T0 + i * MIN, value=450 + i)) == []
    [res] = book.apply(cond(r, False, T0 + 10 * MIN, value=390))
    assert ev([res]) == [("resolved", "resolved", 2, "warning", T0 + 10 * MIN, False)]
    assert (res["starts_at"], res["ends_at"], res["value"]) == (T0, T0 + 10 * MIN, 390.0)
    assert book.apply(cond(r, False, T0 + 11 * MIN)) == []
    # another province is another fingerprint, another alert
    [other] = book.apply(cond(r, True, T0, province="79"))
    assert (other["fingerprint"], other["seq"]) == ("wl|water_level|79|station=s1", 1)


def test_pending_then_firing_after_for_s() -> None:
    r = rule(for_s=120)
    book = AlertBook()
    assert ev(book.apply(cond(r, True, T0))) == [("pending", "pending", 1, "warning", T0, False)]
    assert book.apply(cond(r, True, T0 + MIN)) == []
    [f] = book.apply(cond(r, True, T0 + 2 * MIN))
    assert ev([f]) == [("firing", "firing", 2, "warning", T0 + 2 * MIN, False)]
    assert f["starts_at"] == T0  # when the condition began to hold


def test_pending_fires_from_the_clock_too_and_resolves_if_it_stops_holding() -> None:
    r = rule(for_s=120)
    book = AlertBook()
    book.apply(cond(r, True, T0))
    assert book.tick(T0 + 119_999) == []
    assert ev(book.tick(T0 + 120_000)) == [("firing", "firing", 2, "warning", T0 + 120_000, False)]
    other = AlertBook()
    other.apply(cond(r, True, T0))
    assert ev(other.apply(cond(r, False, T0 + MIN))) == [("resolved", "resolved", 2, "warning", T0 + MIN, False)]
    assert other.tick(T0 + 10 * MIN) == []  # it never held for 2 minutes: never fires


def test_seq_grows_across_episodes() -> None:
    r = rule()
    book = AlertBook()
    out = []
    for i in range(3):
        out += book.apply(cond(r, True, T0 + 2 * i * MIN))
        out += book.apply(cond(r, False, T0 + (2 * i + 1) * MIN))
    assert [(e["event"], e["seq"]) for e in out] == [("firing", 1), ("resolved", 2), ("firing", 3), ("resolved", 4),
                                                     ("firing", 5), ("resolved", 6)]
    assert len({e["alert_id"] for e in out}) == 1  # (alert_id, seq) is the idempotency key: never reused


def test_repeat_interval_and_ack_stops_repeats() -> None:
    r = rule(repeat=600)
    book = AlertBook()
    book.apply(cond(r, True, T0))
    assert book.tick(T0 + 599_999) == []
    assert ev(book.tick(T0 + 600_000)) == [("repeat", "firing", 2, "warning", T0 + 600_000, False)]
    assert book.tick(T0 + 1_199_999) == []
    assert ev(book.tick(T0 + 1_200_000)) == [("repeat", "firing", 3, "warning", T0 + 1_200_000, False)]
    [ack] = book.acknowledge(FP, "trực ban Nguyễn Văn A", "đã báo đài KTTV", T0 + 1_300_000)
    assert ev([ack]) == [("acknowledged", "firing", 4, "warning", T0 + 1_300_000, False)]
    assert ack["ack"] == {"by": "trực ban Nguyễn Văn A", "comment": "đã báo đài KTTV", "at": T0 + 1_300_000}
    assert book.acknowledge(FP, "x", "again", T0 + 1_400_000) == []  # already acknowledged
    assert book.tick(T0 + 10 * 3_600_000) == []  # no more repeats
    # the ack belongs to the episode: a new episode repeats again
    book.apply(cond(r, False, T0 + 11 * 3_600_000))
    book.apply(cond(r, True, T0 + 12 * 3_600_000))
    assert [e["event"] for e in book.tick(T0 + 12 * 3_600_000 + 600_000)] == ["repeat"]
    with pytest.raises(LifecycleError, match="^fingerprint: no alert 'nope'$"):
        book.acknowledge("nope", "x", "", T0)


def test_silence_suppresses_and_its_end_reenables() -> None:
    r = rule(repeat=600)
    book = AlertBook()
    book.add_silence({"feed": "water_level", "province": "01"}, T0, T0 + 3_600_000, "maint-1")
    # state changes are still events (history stays true), marked silenced for the notifier
    assert ev(book.apply(cond(r, True, T0 + 1))) == [("firing", "firing", 1, "warning", T0 + 1, True)]
    assert book.tick(T0 + 1_800_000) == []  # repeats are held back while silenced
    # the silence is over: what it held back is notified at once, then the usual rhythm
    assert ev(book.tick(T0 + 3_600_000)) == [("repeat", "firing", 2, "warning", T0 + 3_600_000, False)]
    assert book.silences == {}
    assert book.tick(T0 + 3_600_000 + 599_999) == []
    assert [e["event"] for e in book.tick(T0 + 3_600_000 + 600_000)] == ["repeat"]
    # another province is not covered by the silence
    assert ev(book.apply(cond(r, True, T0 + 2, province="79"))) == [("firing", "firing", 1, "warning", T0 + 2, False)]


def test_remove_silence_and_dims_matcher() -> None:
    r = rule(repeat=600)
    book = AlertBook()
    book.apply(cond(r, True, T0))  # notified before the silence
    book.add_silence({"dims.station": "s1", "rule_id": "wl"}, T0 + MIN, T0 + 24 * 3_600_000, "s")
    assert book.tick(T0 + 900_000) == []  # a repeat is due but silenced
    [resolved] = book.apply(cond(r, False, T0 + 16 * MIN))
    assert ev([resolved]) == [("resolved", "resolved", 2, "warning", T0 + 16 * MIN, True)]
    book.apply(cond(r, True, T0 + 17 * MIN))
    assert book.remove_silence("s") is True
    assert book.remove_silence("s") is False
    assert [(e["event"], e["seq"], e["silenced"]) for e in book.tick(T0 + 18 * MIN)] == [("repeat", 4, False)]


def test_silence_matchers_are_validated() -> None:
    book = AlertBook()
    with pytest.raises(LifecycleError, match=r"^matchers\.colour: unknown field"):
        book.add_silence({"colour": "red"}, T0, T0 + 1, "x")
    with pytest.raises(LifecycleError, match="^matchers: at least one matcher"):
        book.add_silence({}, T0, T0 + 1, "x")
    with pytest.raises(LifecycleError, match="^ends_ms: must be after starts_ms$"):
        book.add_silence({"feed": "water_level"}, T0, T0, "x")


def test_escalation_fires_once_for_unacknowledged_critical() -> None:
    r = rule(severity="critical", escalate=900)
    book = AlertBook()
    book.apply(cond(r, True, T0))
    assert book.tick(T0 + 899_999) == []
    assert ev(book.tick(T0 + 900_000)) == [("escalated", "firing", 2, "critical", T0 + 900_000, False)]
    assert book.tick(T0 + 3_600_000) == []  # once
    acked = AlertBook()
    acked.apply(cond(r, True, T0))
    acked.acknowledge(FP, "a", "on it", T0 + MIN)
    assert acked.tick(T0 + 3_600_000) == []  # acknowledged in time: no escalation
    warn = AlertBook()
    warn.apply(cond(rule(escalate=900), True, T0))
    assert warn.tick(T0 + 3_600_000) == []  # only critical alerts escalate


def test_escalation_held_by_a_silence_goes_out_when_it_ends() -> None:
    r = rule(severity="critical", escalate=900)
    book = AlertBook()
    book.add_silence({"rule_id": "wl"}, T0, T0 + 3_600_000, "night")
    assert ev(book.apply(cond(r, True, T0))) == [("firing", "firing", 1, "critical", T0, True)]
    assert book.tick(T0 + 1_800_000) == []
    # never notified and overdue: the first list hears of it, the second list gets the escalation
    assert ev(book.tick(T0 + 3_600_000)) == [("repeat", "firing", 2, "critical", T0 + 3_600_000, False),
                                             ("escalated", "firing", 3, "critical", T0 + 3_600_000, False)]
    assert book.tick(T0 + 7_200_000) == []  # no repeat interval, escalated once


def test_severity_rise_is_announced_and_escalation_counts_from_it() -> None:
    r = rule(escalate=900)
    book = AlertBook()
    book.apply(cond(r, True, T0, severity="info"))
    [rise] = book.apply(cond(r, True, T0 + MIN, severity="critical", value=520))
    assert ev([rise]) == [("firing", "firing", 2, "critical", T0 + MIN, False)]
    assert rise["evidence"]["previous_severity"] == "info"
    assert book.apply(cond(r, True, T0 + 2 * MIN, severity="warning")) == []  # keeps the episode's highest
    assert book.tick(T0 + MIN + 899_999) == []
    assert ev(book.tick(T0 + MIN + 900_000)) == [("escalated", "firing", 3, "critical", T0 + MIN + 900_000, False)]


def test_alerts_of_retired_rules_resolve() -> None:
    book = AlertBook()
    book.apply(cond(rule(), True, T0))
    assert book.resolve_retired({"wl"}, T0 + MIN) == []
    [res] = book.resolve_retired({"other"}, T0 + MIN)
    assert ev([res]) == [("resolved", "resolved", 2, "warning", T0 + MIN, False)]
    assert res["evidence"]["resolved_by"] == {"reason": "rule removed"}
    assert book.resolve_retired(set(), T0 + 2 * MIN) == []


def test_rule_version_follows_the_latest_condition() -> None:
    book = AlertBook()
    book.apply(cond(rule(version=1), True, T0))
    [res] = book.apply(cond(rule(version=2), False, T0 + MIN))
    assert res["rule_version"] == 2


def test_snapshot_restore_gives_exactly_the_same_subsequent_events() -> None:
    r = rule(for_s=120, repeat=600, escalate=1200, severity="critical")
    src = rule(rid="src", severity="critical")

    def book() -> AlertBook:
        return AlertBook(Inhibitor(parse_inhibit_rules({"inhibit": [{
            "id": "src_mutes_wl", "source": {"rule": "src"}, "target": {"rule": "wl"}, "equal": ["province"]}]},
            default_catalog()), default_catalog()))

    script: list[tuple[str, Any]] = [
        ("apply", cond(r, True, T0)), ("tick", T0 + 60_000), ("apply", cond(r, True, T0 + 2 * MIN)),
        ("apply", cond(r, True, T0, province="79")), ("silence", ({"province": "79"}, T0, T0 + 30 * MIN, "s79")),
        ("apply", cond(src, True, T0 + 3 * MIN, province="79")),  # mutes wl on 79 (pending): "inhibited"
        ("tick", T0 + 5 * MIN), ("tick", T0 + 12 * MIN),
        ("apply", cond(src, False, T0 + 20 * MIN, province="79")),  # lifted inside the silence: "uninhibited"
        ("tick", T0 + 22 * MIN),
        ("ack", (FP, "an", "ok", T0 + 23 * MIN)), ("tick", T0 + 31 * MIN), ("tick", T0 + 45 * MIN),
        ("apply", cond(r, False, T0 + 46 * MIN)), ("apply", cond(r, True, T0 + 47 * MIN)),
        ("tick", T0 + 49 * MIN), ("tick", T0 + 60 * MIN), ("unsilence", "none"),
        ("apply", cond(r, False, T0 + 61 * MIN, province="79")), ("tick", T0 + 90 * MIN),
    ]

    def run(book: AlertBook, steps: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for kind, arg in steps:
            if kind == "apply":
                out += book.apply(arg)
            elif kind == "tick":
                out += book.tick(arg)
            elif kind == "ack":
                out += book.acknowledge(*arg)
            elif kind == "silence":
                book.add_silence(*arg)
            else:
                book.remove_silence(arg)
        return out

    full = run(book(), script)
    assert {e["event"] for e in full} == set(ALERT_EVENTS)  # the script exercises every event
    for fp in {e["fingerprint"] for e in full}:
        seqs = [e["seq"] for e in full if e["fingerprint"] == fp]
        assert seqs == list(range(1, len(seqs) + 1))
    for cut in range(len(script) + 1):
        first = book()
        head = run(first, script[:cut])
        restored = book()
        restored.restore(first.snapshot())
        assert head + run(restored, script[cut:]) == full, f"cut at step {cut}"
