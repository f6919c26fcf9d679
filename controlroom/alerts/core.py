"""The alerter's brain: inputs in (windows, dead letters, late readings, commands, clock), alert events
out. Pure code: the service (streams/alerter.py) only moves bytes between Kafka and this.

Inputs and what they feed:
- agg.live (open windows as they fill): thresholds, within a second of the reading;
- agg.1m (closed windows): every window rule, and the "total" of the data-quality share;
- feeds.dlq / feeds.late: the "rejected" / "late" of the data-quality share, per minute received;
- alerts.control: rule changes (hot reload, versioned), silences, acknowledgements;
- reports.submitted: who has submitted which report form for which period (report deadline rules);
- the clock: staleness, pending → firing, repeats, escalations; `resumed(now)` once the caller has caught up
  with its inputs after a (re)start (staleness counts silence from then: see controlroom/alerts/evaluate.py).
Inhibition rules (controlroom/alerts/inhibit.py), when given, mute the notifications of alerts explained by
another firing alert; conditions that may inhibit others are applied first within each input.
State (rule engine, alert book, rules changed through the API) round-trips through `snapshot()`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import orjson

from controlroom.alerts.evaluate import Condition, RuleEngine
from controlroom.alerts.inhibit import Inhibitor, InhibitRule, labels_of
from controlroom.alerts.lifecycle import AlertBook, LifecycleError
from controlroom.alerts.rules import RuleError, effective_rule_docs, parse_rule
from controlroom.board_uids import COMPLIANCE_UID, EXPLORER_UID  # the Grafana boards an alert links to
from controlroom.catalog import Catalog
from controlroom.logs import get_logger
from controlroom.schema import (
    AlertEvent,
    ControlCommand,
    DeadLetter,
    LateReading,
    ReportSubmitted,
    WindowMessage,
    alert_id_of,
    dims_key,
    feed_of_dead_letter,
)

log = get_logger("alerter")

SNAPSHOT_VERSION = 1
MINUTE_MS = 60_000
ALL = "$__all"  # Grafana's URL value for a variable's "All"


def board_link(grafana_url: str, event: Mapping[str, Any]) -> str:
    """The feed explorer on the alert's series, from an hour before it began to ten minutes after now; a report
    deadline alert: the Reporting compliance board on its form."""
    if event.get("rule_type") == "report_deadline":
        form = urlencode({"var-form": event["feed"]})
        return f"{grafana_url.rstrip('/')}/d/{COMPLIANCE_UID}/reporting-compliance?{form}"
    dkey = dims_key(dict(event.get("dims") or {}))
    query = {"var-feed": event["feed"], "var-province": event["province"] or ALL, "var-dims": dkey or ALL,
             "from": int(event["starts_at"]) - 3_600_000, "to": int(event["event_at"]) + 600_000}
    return f"{grafana_url.rstrip('/')}/d/{EXPLORER_UID}/feed-explorer?{urlencode(query)}"


class AlertingCore:
    def __init__(self, catalog: Catalog, base_docs: list[dict[str, Any]], *, window_s: int = 60,
                 allowed_lateness_s: float = 10.0, grafana_url: str | None = "http://localhost:3000",
                 inhibit_rules: list[InhibitRule] | None = None) -> None:
        self.catalog = catalog
        self.base_docs = base_docs
        self.stored: dict[str, dict[str, Any]] = {}  # rule id -> {"version", "doc" | None}, from the API
        self.grafana_url = grafana_url
        self.engine = RuleEngine(self._rules(), catalog, window_s=window_s, allowed_lateness_s=allowed_lateness_s)
        self.inhibitor = Inhibitor(list(inhibit_rules), catalog) if inhibit_rules else None
        self.book = AlertBook(self.inhibitor)

    # --- rules --------------------------------------------------------------------------------------

    def _rules(self) -> list[Any]:
        rules = []
        for rid, doc in sorted(effective_rule_docs(self.base_docs, self.stored).items()):
            try:
                rules.append(parse_rule(doc, f"rules[{rid}]", self.catalog))
            except RuleError as exc:  # validated when it was written; the catalog may have changed since
                log.error("rule skipped: no longer valid", rule_id=rid, error=str(exc))
        return rules

    def reload_rules(self, now_ms: int) -> list[AlertEvent]:
        rules = self._rules()
        events = self._apply(self.engine.replace_rules(rules, now_ms))
        return events + self._linked(self.book.resolve_retired([r.id for r in rules if r.enabled], now_ms))

    # --- inputs -------------------------------------------------------------------------------------

    def on_live(self, point: WindowMessage) -> list[AlertEvent]:
        return self._apply(self.engine.on_window(point, live=True))

    def on_closed(self, point: WindowMessage) -> list[AlertEvent]:
        conditions = self.engine.on_window(point)
        conditions += self.engine.on_quality(str(point["feed"]), int(point["window_start"]), int(point["count"]),
                                             0, 0)
        return self._apply(conditions)

    def on_dead_letter(self, doc: DeadLetter) -> list[AlertEvent]:
        feed = feed_of_dead_letter(doc, self.catalog)
        if not feed:
            return []  # no feed to charge it to (garbage on a feed topic of no known feed)
        minute = int(doc.get("received_ms") or 0) // MINUTE_MS * MINUTE_MS
        return self._apply(self.engine.on_quality(feed, minute, 1, 1, 0))

    def on_late(self, doc: LateReading) -> list[AlertEvent]:
        feed = str(doc.get("feed") or "")
        if feed not in self.catalog.feeds:
            return []
        minute = int(doc.get("detected_ms") or 0) // MINUTE_MS * MINUTE_MS
        return self._apply(self.engine.on_quality(feed, minute, 1, 0, 1))

    def on_report(self, doc: ReportSubmitted) -> list[AlertEvent]:
        return self._apply(self.engine.on_report(doc))

    def on_control(self, msg: ControlCommand) -> list[AlertEvent]:
        """A command from the API. Each is idempotent; a bad one is logged and skipped, never fatal."""
        kind, at = msg.get("kind"), int(msg.get("at") or 0)
        try:
            if kind == "rule.put":
                doc = dict(msg["rule"])
                self.stored[str(doc["id"])] = {"version": int(doc["version"]), "doc": doc}
                return self.reload_rules(at)
            if kind == "rule.delete":
                self.stored[str(msg["rule_id"])] = {"version": int(msg["version"]), "doc": None}
                return self.reload_rules(at)
            if kind == "silence.put":
                s = msg["silence"]
                self.book.add_silence(dict(s["matchers"]), int(s["starts_ms"]), int(s["ends_ms"]), str(s["id"]))
                return []
            if kind == "silence.delete":
                self.book.remove_silence(str(msg["silence_id"]))
                return []
            if kind == "ack":
                return self._ack(str(msg["alert_id"]), str(msg.get("by") or "?"), str(msg.get("comment") or ""), at)
        except (KeyError, TypeError, ValueError, LifecycleError) as exc:
            log.error("control command skipped", kind=kind, error=f"{type(exc).__name__}: {exc}")
        return []  # subscription commands are the notifier's

    def _ack(self, alert_id: str, by: str, comment: str, at: int) -> list[AlertEvent]:
        for fp, a in self.book.alerts.items():
            if alert_id_of(fp) != alert_id:
                continue
            if a.state == "resolved" or a.starts_at_ms > at:
                return []  # the acknowledged episode is over (a replayed command must not ack a newer one)
            return self._linked(self.book.acknowledge(fp, by, comment, at))
        log.warning("ack for an unknown alert", alert_id=alert_id)
        return []

    def resumed(self, now_ms: int) -> None:
        """Caught up with the inputs after a (re)start: the clock-driven rules judge from `now_ms` on."""
        self.engine.resumed(now_ms)

    def tick(self, now_ms: int) -> list[AlertEvent]:
        events = self._apply(self.engine.tick(now_ms))
        return events + self._linked(self.book.tick(now_ms))

    # --- helpers ------------------------------------------------------------------------------------

    def _apply(self, conditions: Iterable[Condition]) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        inh = self.inhibitor
        if inh is not None:  # sources first: a feed-wide alert mutes its series in the same tick
            conditions = sorted(conditions, key=lambda c: not inh.may_source(labels_of(
                c.rule.id, c.rule.type, c.feed, c.province, c.severity, c.dims, self.catalog)))
        at = None
        for c in conditions:
            events.extend(self.book.apply(c))
            at = c.at_ms if at is None else max(at, c.at_ms)
        if at is not None:  # a source began or ended: what it mutes says so now, not at the next tick
            events.extend(self.book.refresh_inhibitions(at))
        return self._linked(events)

    def _linked(self, events: list[AlertEvent]) -> list[AlertEvent]:
        if self.grafana_url is None:  # no board to link to (a backtest: a quarter of its time went on links)
            return events
        for e in events:
            e["link"] = board_link(self.grafana_url, e)
        return events

    # --- persistence --------------------------------------------------------------------------------

    def snapshot(self, offsets: Mapping[str, int]) -> bytes:
        """Everything needed to carry on, with the input positions it reflects; zlib-compressed JSON."""
        doc = {"v": SNAPSHOT_VERSION, "stored": self.stored, "offsets": dict(offsets),
               "engine": orjson.Fragment(self.engine.snapshot()), "book": orjson.Fragment(self.book.snapshot())}
        return zlib.compress(orjson.dumps(doc), 1)

    def restore(self, data: bytes) -> dict[str, int]:
        """Load a snapshot; returns the input positions ("topic:partition" -> next offset)."""
        doc = orjson.loads(zlib.decompress(data))
        if doc.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown alerter snapshot version {doc.get('v')!r}")
        self.stored = doc["stored"]
        self.engine.replace_rules(self._rules())
        self.engine.restore(orjson.dumps(doc["engine"]))
        self.book.restore(orjson.dumps(doc["book"]))
        return {str(k): int(v) for k, v in doc["offsets"].items()}
