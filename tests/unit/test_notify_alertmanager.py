"""What the Alertmanager pusher sends for a run of alert events (notify.alertmanager.AlertmanagerBook, pure)."""

from __future__ import annotations

from typing import Any

from controlroom.catalog import Catalog
from controlroom.schema import AlertEvent, alert_message, fingerprint
from notify.alertmanager import RESOLVED_KEEP_MS, AlertmanagerBook
from notify.formats import am_fingerprint, am_labels, go_time

T = 1_795_687_200_000  # 2026-11-26T10:00:00Z
RESEND_MS = 60_000


def ev(kind: str, seq: int, *, state: str | None = None, severity: str = "warning", at: int = T,
       silenced: bool = False, province: str = "01") -> AlertEvent:
    fp = fingerprint("water_level_alarm", "water_level", province, "station=s1")
    e = alert_message(fingerprint_=fp, rule_id="water_level_alarm", rule_version=2, rule_type="threshold",
                      severity=severity, event=kind, state=state or kind, seq=seq, feed="water_level",
                      province=province, dims={"station": "s1"}, summary_vi="Mực nước vượt", summary_en="Water high",
                      value=812.5, evidence={}, starts_at_ms=T, ends_at_ms=at if kind == "resolved" else None,
                      event_at_ms=at, link="https://cr.example.vn/alerts/x")
    e["silenced"] = silenced
    return e


def book(catalog: Catalog) -> AlertmanagerBook:
    return AlertmanagerBook(catalog, RESEND_MS)


def sent(b: AlertmanagerBook, now: int, *, everything: bool = False) -> list[dict[str, Any]]:
    return [b.postable(fp, now) for fp in b.take(now, everything=everything)]


def test_firing_then_resolved_as_prometheus_sends_it(catalog: Catalog) -> None:
    b = book(catalog)
    assert not b.offer(ev("pending", 1, state="pending"))  # Prometheus does not send pending alerts
    assert sent(b, T) == []
    assert b.offer(ev("firing", 2, at=T + 5000, silenced=True))  # silenced: Alertmanager has its own silences
    [a] = sent(b, T + 5000)
    labels = am_labels(ev("firing", 2), catalog)
    assert a == {"labels": labels, "annotations": a["annotations"], "startsAt": go_time(T),
                 "endsAt": go_time(T + 5000 + 4 * RESEND_MS), "generatorURL": "https://cr.example.vn/alerts/x"}
    assert labels["alertname"] == "water_level_alarm" and labels["station"] == "s1" and labels["severity"] == "warning"
    # a dim named like a label of ours keeps both: traffic incidents' severity dim beside the alert's severity
    crash = ev("firing", 1, severity="critical")
    crash["dims"] = {"severity": "fatal", "road": "QL1A"}
    crash_labels = am_labels(crash, catalog)
    assert crash_labels["severity"] == "critical" and crash_labels["dim_severity"] == "fatal"
    assert crash_labels["road"] == "QL1A"
    assert a["annotations"]["summary"] == "Water high" and a["annotations"]["summary_vi"] == "Mực nước vượt"
    assert sent(b, T + 6000) == []  # nothing changed
    # a resend carries every firing alert again, its endsAt pushed forward
    [again] = sent(b, T + 65_000, everything=True)
    assert again["endsAt"] == go_time(T + 65_000 + 4 * RESEND_MS)
    assert not b.offer(ev("firing", 2))  # a replayed event changes nothing
    assert b.offer(ev("acknowledged", 3, state="firing"))  # still firing: its annotations follow
    assert sent(b, T + 66_000)[0]["annotations"]["event"] == "acknowledged"
    end = ev("resolved", 4, at=T + 90_000)
    end["link"] = "https://cr.example.vn/alerts/x?to=end"  # a link per event (its range reaches the event)
    assert b.offer(end)
    [done] = sent(b, T + 90_000)
    assert done["endsAt"] == go_time(T + 90_000) and done["labels"] == labels
    assert done["generatorURL"] == end["link"]  # the resolve's own link, as our notifier shows it
    # the resolve is sent again at every resend for 15 minutes, then forgotten
    assert len(sent(b, T + 90_000 + RESOLVED_KEEP_MS, everything=True)) == 1
    assert sent(b, T + 91_000 + RESOLVED_KEEP_MS, everything=True) == []


def test_an_episode_that_never_fired_is_not_sent(catalog: Catalog) -> None:
    b = book(catalog)
    assert not b.offer(ev("pending", 1, state="pending"))
    assert not b.offer(ev("acknowledged", 2, state="pending"))
    assert not b.offer(ev("resolved", 3))
    assert sent(b, T, everything=True) == []


def test_a_severity_change_resolves_the_old_label_set(catalog: Catalog) -> None:
    """Severity is a label: warning → critical is a new alert for Alertmanager, and the old one ends."""
    b = book(catalog)
    b.offer(ev("firing", 1))
    sent(b, T)
    b.offer(ev("firing", 2, severity="critical", at=T + 30_000))
    out = {a["labels"]["severity"]: a for a in sent(b, T + 30_000)}
    assert out["warning"]["endsAt"] == go_time(T + 30_000)
    assert out["critical"]["endsAt"] == go_time(T + 30_000 + 4 * RESEND_MS)
    assert b.firing() == 1
    b.offer(ev("resolved", 3, severity="critical", at=T + 60_000))
    [end] = sent(b, T + 60_000)
    assert end["labels"]["severity"] == "critical" and end["endsAt"] == go_time(T + 60_000)


def test_a_failed_push_is_sent_again_with_the_latest_state(catalog: Catalog) -> None:
    b = book(catalog)
    b.offer(ev("firing", 1))
    fps = b.take(T, everything=False)
    b.offer(ev("resolved", 2, at=T + 1000))  # while the failed request was out
    b.requeue(fps)
    [a] = sent(b, T + 2000)
    assert a["endsAt"] == go_time(T + 1000)
    assert am_fingerprint(a["labels"]) == fps[0]
