"""Report deadline rules (controlroom/alerts/deadlines.py) on the alerter's own core: a reminder before a form's
deadline and an overdue alert after it, for each unit that has not submitted, resolved by its submission; the
periods judged; rule validation; and the state carried through a snapshot (seeded)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest

from controlroom.alerts.core import AlertingCore
from controlroom.alerts.deadlines import DAY_MS, KEEP_MS, SubmissionLedger, judged_periods
from controlroom.alerts.rules import RuleError, parse_rules, read_rule_docs
from controlroom.catalog import NATIONAL, default_catalog
from controlroom.reports import default_forms
from controlroom.schema import AlertEvent, report_submitted_message

CAT = default_catalog()
FORM = "BC_NHIEMVU_THANG"  # monthly, due by the end of day 5 of the next month (Vietnamese time)
UNITS = [NATIONAL, *sorted(CAT.provinces)]
REMIND = {"id": "due_soon", "version": 1, "type": "report_deadline", "feed": FORM, "severity": "info",
          "repeat_interval_s": None, "params": {"stage": "reminder", "days_before": 3},
          "summary": {"en": "{form_en} {period} – {province_en}: {days_left:.1f} days left ({agency})"}}
OVERDUE = {"id": "overdue", "version": 1, "type": "report_deadline", "feed": FORM, "severity": "warning",
           "params": {"stage": "overdue", "judge_for_days": 10},
           "summary": {"en": "{form_en} {period} – {province_en}: {days_late:.1f} days late ({agency})"}}


def vn_ms(text: str) -> int:
    """An instant written in Vietnamese time (UTC+7)."""
    return int(datetime.fromisoformat(text + "+07:00").astimezone(UTC).timestamp() * 1000)


DEADLINE = vn_ms("2026-11-06T00:00:00")  # October 2026's: the end of 5 November


def core(*docs: dict[str, Any]) -> AlertingCore:
    return AlertingCore(CAT, list(docs or [REMIND, OVERDUE]), grafana_url="http://grafana:3000")


def submitted(unit: str, at: int, period: str = "2026-10", form: str = FORM) -> Any:
    return report_submitted_message(form, period, unit, 1, at, "someone")


def brief(events: list[AlertEvent]) -> list[tuple[str, str, str, str]]:
    return sorted((e["rule_id"], e["event"], e["province"], e["dims"]["period"]) for e in events)


def test_the_periods_a_rule_judges_are_those_whose_deadline_window_holds_now() -> None:
    form = default_forms()[FORM]
    remind = {"stage": "reminder", "days_before": 3}
    overdue = {"stage": "overdue", "grace_s": 0, "judge_for_days": 40}
    assert form.deadline_ms(form.period("2026-10")) == DEADLINE
    assert list(judged_periods(form, remind, DEADLINE - 3 * DAY_MS - 1)) == []
    assert [p.label for p, _ in judged_periods(form, remind, DEADLINE - 3 * DAY_MS)] == ["2026-10"]
    assert [p.label for p, _ in judged_periods(form, remind, DEADLINE - 1)] == ["2026-10"]
    assert list(judged_periods(form, remind, DEADLINE)) == []
    assert [p.label for p, _ in judged_periods(form, overdue, DEADLINE)] == ["2026-10", "2026-09"]
    # 40 days on, September's deadline (5 October) is out of the window, October's and November's are in
    at = vn_ms("2026-12-07T12:00:00")
    assert [p.label for p, _ in judged_periods(form, overdue, at)] == ["2026-11", "2026-10"]
    quarterly = default_forms()["BC_CCHC_QUY"]  # 5 days after the quarter's end
    assert [(p.label, d) for p, d in judged_periods(quarterly, remind, vn_ms("2026-10-03T00:00:00"))] == [
        ("2026-Q3", vn_ms("2026-10-06T00:00:00"))]


def test_reminder_then_overdue_each_resolved_by_the_units_submission() -> None:
    c = core()
    c.resumed(DEADLINE - 10 * DAY_MS)
    assert c.tick(DEADLINE - 4 * DAY_MS) == []  # nothing is due within 3 days yet
    reminders = c.tick(DEADLINE - 3 * DAY_MS)
    assert brief(reminders) == [("due_soon", "firing", u, "2026-10") for u in sorted(UNITS)]
    hanoi = next(e for e in reminders if e["province"] == "01")
    assert (hanoi["severity"], hanoi["feed"], hanoi["rule_type"]) == ("info", FORM, "report_deadline")
    assert hanoi["summary_en"] == "Monthly report on assigned tasks 2026-10 – Hanoi: 3.0 days left (ioc_01)"
    assert hanoi["evidence"]["deadline_ms"] == DEADLINE and hanoi["evidence"]["agency"] == "ioc_01"
    assert hanoi["link"] == f"http://grafana:3000/d/controlroom-reporting-compliance/reporting-compliance?var-form={FORM}"
    national = next(e for e in reminders if e["province"] == NATIONAL)
    assert national["evidence"]["agency"] == "government_office"  # the form's national submitter
    assert c.tick(DEADLINE - 2 * DAY_MS) == []  # still due, nothing new to say (no repeat for reminders)

    # Hà Nội submits on time: its reminder resolves at once, with no tick
    done = c.on_report(submitted("01", DEADLINE - DAY_MS))
    assert brief(done) == [("due_soon", "resolved", "01", "2026-10")]
    assert c.on_report(submitted("01", DEADLINE - DAY_MS + 5)) == []  # a correction changes nothing

    # the deadline passes: every other reminder ends, and the same units are overdue
    at_deadline = c.tick(DEADLINE)
    others = sorted(set(UNITS) - {"01"})
    assert brief(at_deadline) == sorted([("due_soon", "resolved", u, "2026-10") for u in others]
                                        + [("overdue", "firing", u, "2026-10") for u in others])

    # Huế (46) submits late: its overdue alert resolves
    late = c.on_report(submitted("46", DEADLINE + 2 * DAY_MS))
    assert brief(late) == [("overdue", "resolved", "46", "2026-10")]
    repeats = c.tick(DEADLINE + 2 * DAY_MS)  # the rule's reminders (repeat_interval_s) for those still missing
    assert brief(repeats) == [("overdue", "repeat", u, "2026-10") for u in sorted(set(others) - {"46"})]
    # a submission for another form or period leaves these alerts alone
    assert c.on_report(submitted("79", DEADLINE, period="2026-09")) == []
    # the rule judges 10 days: then the rest resolve, saying why
    gone = c.tick(DEADLINE + 10 * DAY_MS)
    assert brief(gone) == [("overdue", "resolved", u, "2026-10") for u in sorted(set(others) - {"46"})]


def test_why_an_alert_ended_is_in_the_condition() -> None:
    """The resolved event keeps its episode's evidence (the lifecycle's rule); the engine's condition says why."""
    c = core()
    c.resumed(DEADLINE - 3 * DAY_MS)
    c.tick(DEADLINE - 3 * DAY_MS)
    [ended] = c.engine.on_report(submitted("01", DEADLINE - DAY_MS))
    assert (ended.active, ended.evidence["reason"], ended.at_ms) == (False, "submitted", DEADLINE - DAY_MS)
    reasons = {(x.rule.id, x.active, x.evidence.get("reason")) for x in c.engine.tick(DEADLINE)}
    assert reasons == {("due_soon", False, "the deadline passed (an overdue rule judges it from now)"),
                       ("overdue", True, None)}
    reasons = {(x.rule.id, x.active, x.evidence.get("reason")) for x in c.engine.tick(DEADLINE + 10 * DAY_MS)}
    assert reasons == {("overdue", False, "deadline more than 10 days ago: no longer judged")}


def test_a_submission_before_the_window_keeps_the_unit_out_of_it_and_provinces_filter_units() -> None:
    c = core({**OVERDUE, "provinces": ["01", "79"]})
    c.resumed(DEADLINE - DAY_MS)
    c.on_report(submitted("79", DEADLINE - DAY_MS))
    assert brief(c.tick(DEADLINE + 1)) == [("overdue", "firing", "01", "2026-10")]


def test_rule_changes_resolve_alerts_of_units_no_longer_covered() -> None:
    c = core(OVERDUE)
    c.resumed(DEADLINE)
    assert len(c.tick(DEADLINE + 1)) == len(UNITS)
    put = {"kind": "rule.put", "by": "t", "at": DEADLINE + 2, "rule": {**OVERDUE, "version": 2, "provinces": ["01"]}}
    events = c.on_control(put)  # type: ignore[arg-type]
    assert {e["province"] for e in events if e["event"] == "resolved"} == set(UNITS) - {"01"}


@pytest.mark.parametrize(("change", "message"), [
    ({"feed": "BC_NOPE"}, "rules[0].feed: unknown report form 'BC_NOPE'"),
    ({"feed": "water_level"}, "rules[0].feed: unknown report form 'water_level'"),
    ({"params": {}}, "rules[0].params.stage: must be one of reminder, overdue"),
    ({"params": {"stage": "reminder", "days_before": 0}}, "rules[0].params.days_before: must be > 0"),
    ({"params": {"stage": "reminder", "judge_for_days": 3}}, "rules[0].params.judge_for_days: unknown field"),
    ({"params": {"stage": "overdue", "grace_s": -1}}, "rules[0].params.grace_s: must be >= 0"),
    ({"dims": {"period": "2026-10"}}, "rules[0].dims: not for a report_deadline rule"),
    ({"agencies": ["mof"]}, "rules[0].agencies: not for a report_deadline rule"),
])
def test_rule_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleError) as err:
        parse_rules({"rules": [{**REMIND, **change}]}, CAT)
    assert str(err.value).startswith(message)


def test_the_shipped_rules_say_what_is_due_in_both_languages() -> None:
    docs = [d for d in read_rule_docs(None, CAT) if d["type"] == "report_deadline"]
    assert {d["id"]: d["severity"] for d in docs} == {"report_due_soon": "info", "report_overdue": "warning"}
    c = AlertingCore(CAT, docs, grafana_url=None)
    c.resumed(DEADLINE - 10 * DAY_MS)
    [soon] = [e for e in c.tick(DEADLINE - 2 * DAY_MS) if e["province"] == "01" and e["feed"] == FORM
              and e["rule_id"] == "report_due_soon"]
    assert soon["summary_vi"] == ("Sắp đến hạn nộp Báo cáo tình hình thực hiện nhiệm vụ tháng kỳ 2026-10 – Thành phố "
                                  "Hà Nội: còn 2.0 ngày (hạn cuối ngày 2026-11-05)")
    [late] = [e for e in c.tick(DEADLINE + DAY_MS) if e["province"] == "01" and e["feed"] == FORM
              and e["event"] == "firing" and e["dims"]["period"] == "2026-10"]
    assert late["summary_en"] == ("Report overdue: Monthly report on assigned tasks for 2026-10 – Hanoi not "
                                  "submitted, 1.0 days late (due by the end of 2026-11-05)")


def test_every_form_when_the_feed_is_any() -> None:
    c = core({**OVERDUE, "feed": "*", "provinces": ["01"], "params": {"stage": "overdue"}})  # 31 days
    at = vn_ms("2026-11-21T00:00:00")  # after 5 November (tasks) and 20 November (the socio-economic report)
    c.resumed(at)
    monthly = {(e["feed"], e["dims"]["period"]) for e in c.tick(at)}
    assert {("BC_NHIEMVU_THANG", "2026-10"), ("BC_KTXH_THANG", "2026-10")} <= monthly
    assert {form for form, _ in monthly} <= set(default_forms())


def test_the_ledger_forgets_old_reports_and_unknown_forms() -> None:
    ledger = SubmissionLedger()
    assert ledger.record(FORM, "2026-10", "01", 5) and not ledger.record(FORM, "2026-10", "01", 9)
    assert ledger.submitted_at(FORM, "2026-10", "01") == 5
    ledger.record(FORM, "2026-10", "79", 7)
    ledger.record("BC_GONE", "2026-10", "01", 7)
    ledger.record(FORM, "not-a-period", "01", 7)
    assert ledger.prune(default_forms(), DEADLINE) == 2
    assert ledger.prune(default_forms(), DEADLINE + KEEP_MS + 1) == 2 and ledger.first == {}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_restored_core_emits_exactly_what_the_original_would(seed: int) -> None:
    """Random submissions (some before, some after the deadline, some never) and ticks through the reminder and
    overdue windows; at a random point the state is snapshotted into a fresh core, which must carry on exactly."""
    rng = random.Random(seed)
    steps: list[tuple[str, Any]] = []
    t = DEADLINE - 5 * DAY_MS
    while t < DEADLINE + 12 * DAY_MS:
        t += rng.randint(1, 12) * 3_600_000
        if rng.random() < 0.5:
            steps.append(("report", submitted(rng.choice(UNITS), t)))
        steps.append(("tick", t))
    cut = rng.randrange(len(steps))

    def run(c: AlertingCore, part: list[tuple[str, Any]]) -> list[tuple[str, int, str]]:
        out = []
        for kind, arg in part:
            events = c.tick(arg) if kind == "tick" else c.on_report(arg)
            out += [(e["alert_id"], e["seq"], e["event"]) for e in events]
        return out

    original = core()
    original.resumed(DEADLINE - 6 * DAY_MS)
    before = run(original, steps[:cut])
    restored = core()
    restored.restore(original.snapshot({"reports.submitted:0": cut}))
    assert run(restored, steps[cut:]) == run(original, steps[cut:])
    assert before or cut == 0 or all(kind == "report" or arg < DEADLINE - 3 * DAY_MS for kind, arg in steps[:cut])
    # and on the whole run: exactly the units with nothing submitted when the clock first passed the deadline
    fresh = core()
    fresh.resumed(DEADLINE - 6 * DAY_MS)
    events: list[AlertEvent] = []
    for kind, arg in steps:
        events += fresh.tick(arg) if kind == "tick" else fresh.on_report(arg)
    fired = {e["province"] for e in events if e["rule_id"] == "overdue" and e["event"] == "firing"}
    judged_at = min(arg for kind, arg in steps if kind == "tick" and arg >= DEADLINE)
    in_time = {a["unit"] for kind, a in steps if kind == "report" and a["submitted_at"] <= judged_at}
    assert fired == set(UNITS) - in_time
