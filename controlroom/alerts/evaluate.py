"""Rule evaluation on closed windows, quality counts and a clock. Pure code, no Faust, Kafka or ClickHouse.

`RuleEngine` turns inputs into `Condition`s (a verdict of one rule on one series); `controlroom.alerts.lifecycle`
turns conditions into alert events. The engine holds only the bounded state its rules need:
- last reading time per series (staleness), over every series the catalog expects plus any seen;
- rate_of_change: the windows of one lookback (two in "period" mode) per series;
- anomaly: per series and hour-of-day bucket, an EWMA of mean and variance (3 floats);
- data_quality / target ratio: per-window counts over one period; target plan: the year's cumulative sum;
- which fingerprints are active, so a condition that stops holding is reported once as inactive.
All of it is plain JSON (`snapshot()` / `restore()`), so the worker can keep it in a changelogged table.

What is emitted: an active condition on every evaluation that holds (the lifecycle needs to see it
again to move pending → firing and to carry the latest evidence); an inactive one only when a
fingerprint that was active stops holding, or can no longer be judged (e.g. too few samples).
Staleness is judged by `tick(now_ms)` only, both ways, so a series silent from the start fires.

Restarts: the alerter calls `resumed(now_ms)` once it has caught up with its inputs. Silence is counted
from when Control Room was able to receive: for a series not already alerting, from max(last reading,
resumed) — its silence before the restart may be our own downtime, not the agency's — and no series is
judged before one cadence plus the lateness allowance has passed since then. A staleness alert that was
firing before the restart keeps counting from its last reading: it resolves when a reading arrives, not
because of the restart. The evidence says when the silence was counted from the restart.

Times: window conditions are stamped with the window's end (event time); `tick` with the caller's
clock (wall time). Live, the two differ by the window latency (about window + lateness).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from controlroom.alerts import deadlines
from controlroom.alerts.contract_rule import ContractJudge
from controlroom.alerts.rules import ANY_FEED, TEMPLATE_FIELDS, Rule
from controlroom.catalog import NATIONAL, Catalog
from controlroom.reports import Form, default_forms, province_centers, reporting_agency
from controlroom.schema import dims_key, fingerprint, ms_to_iso, series_key

HOUR_MS = 3_600_000
PLAN_COVERAGE_SLACK_MS = 3_600_000  # a plan sum must start within the year's first hour to be judged
SNAPSHOT_VERSION = 1
SILENT_EXAMPLES = 10  # silent series a feed-wide staleness alert names in its evidence
# used when a rule has no summary of its own, so an alert always says what and where
DEFAULT_SUMMARY_VI = "{rule_id}: {feed_vi} – {province_vi} {dims}: {value_text} {unit}"
DEFAULT_SUMMARY_EN = "{rule_id}: {feed_en} – {province_en} {dims}: {value_text} {unit}"

# params that shape a rule's accumulated state: a new version that changes only the others
# (thresholds, k, severity, texts…) keeps the state, so an anomaly baseline is not re-learned
_STATE_PARAMS: dict[str, tuple[str, ...]] = {
    "threshold": (), "staleness": (), "contract": (),
    "rate_of_change": ("metric", "lookback_s", "mode"),
    "anomaly": ("metric", "alpha", "tz_offset_h", "seasonal"),
    "data_quality": ("period_s",),
    "target": ("kind", "numerator", "denominator", "by", "period_s", "metric", "tz_offset_h"),
    "report_deadline": (),  # its state is the ledger of submissions, shared by every report rule
}


@dataclass(frozen=True, slots=True)
class Condition:
    """One rule's verdict on one series at one time."""
    rule: Rule
    fingerprint: str
    feed: str
    province: str
    dims: dict[str, str]
    active: bool
    value: float | None
    evidence: dict[str, Any]
    at_ms: int
    severity: str
    summary_vi: str
    summary_en: str


def metric_value(point: Mapping[str, Any], metric: str) -> float:
    return float(point[metric])


def _signature(rule: Rule) -> str:
    keep = _STATE_PARAMS[rule.type]
    doc = [rule.type, rule.feed, sorted(rule.provinces), sorted(rule.agencies), dict(rule.dims),
           {k: rule.params.get(k) for k in keep},
           {key: {k: p.get(k) for k in keep} for key, p in sorted(rule.overrides.items())}]
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def _fmt(template: str, ctx: Mapping[str, Any]) -> str:
    try:
        return template.format_map(ctx)
    except (KeyError, ValueError, IndexError, TypeError):
        return template  # a format spec that does not fit the value: better the raw text than no alert


def _year_bounds(ms: int, tz_h: float) -> tuple[int, int, int]:
    """(year, start ms, end ms) of the local calendar year holding `ms`."""
    tz = timedelta(hours=tz_h)
    local = datetime.fromtimestamp(ms / 1000, tz=UTC) + tz
    start = datetime(local.year, 1, 1, tzinfo=UTC) - tz
    end = datetime(local.year + 1, 1, 1, tzinfo=UTC) - tz
    return local.year, int(start.timestamp() * 1000), int(end.timestamp() * 1000)


class RuleEngine(ContractJudge):
    def __init__(self, rules: Iterable[Rule], catalog: Catalog, *, window_s: int = 60,
                 allowed_lateness_s: float = 10.0) -> None:
        self.catalog = catalog
        self.window_ms = window_s * 1000
        self.lateness_ms = int(allowed_lateness_s * 1000)
        self.rules: dict[str, Rule] = {}
        self._by_feed: dict[str, list[Rule]] = {}
        self._state: dict[str, tuple[str, dict[str, Any]]] = {}  # rule id -> (signature, state)
        self.active: dict[str, str] = {}  # fingerprint -> rule id
        # series key -> [latest reading time ms, feed, province, dims]
        self.last_seen: dict[str, list[Any]] = {}
        # when this engine (re)started judging the clock: resumed(), else the first tick; silence of a series
        # not already alerting is counted from no earlier than this
        self.resumed_ms: int | None = None
        self.owned_provinces: frozenset[str] | None = None  # None: this engine judges every province
        self.reports = deadlines.SubmissionLedger()  # the reports known submitted (topic reports.submitted)
        self.report_forms: Mapping[str, Form] = default_forms()
        self._report_units = [NATIONAL, *sorted(catalog.provinces)]  # as GET /reports/compliance expects them
        self._centers = province_centers(catalog)
        self._ledger_pruned_ms = 0
        for feed, province, dims in catalog.iter_series():
            self.last_seen[series_key(feed.id, province, dims_key(dims))] = [None, feed.id, province, dims]
        self.replace_rules(rules)

    # --- rules ------------------------------------------------------------------------------------

    def replace_rules(self, rules: Iterable[Rule], now_ms: int | None = None) -> list[Condition]:
        """Swap the rule set in a running worker. State of rules whose state-shaping parts are unchanged
        is kept; alerts of removed or disabled rules, or of series a rule no longer matches, are
        reported inactive (so they resolve instead of firing for ever)."""
        old = self.rules
        new = {r.id: r for r in rules if r.enabled}
        self.rules = new
        self._by_feed = {}
        for r in new.values():
            self._by_feed.setdefault(r.feed, []).append(r)
        state: dict[str, tuple[str, dict[str, Any]]] = {}
        for r in new.values():
            sig = _signature(r)
            prev = self._state.get(r.id)
            state[r.id] = prev if prev is not None and prev[0] == sig else (sig, {})
        self._state = state
        out: list[Condition] = []
        for fp, rid in list(self.active.items()):
            _, feed, province, dkey = fp.split("|", 3)
            dims = dict(part.split("=", 1) for part in dkey.split(",")) if dkey else {}
            rule = new.get(rid)
            if rule is not None and (province == "" or rule.matches(feed, province, dims)):
                continue
            gone = old.get(rid) or rule
            if gone is None:
                del self.active[fp]
                continue
            ev = self._evidence(gone, {"reason": "rule removed" if rule is None else "series no longer matched"})
            at = now_ms if now_ms is not None else self.resumed_ms or 0
            c = self._emit(gone, feed, province, dims, False, None, ev, at, gone.severity, {})
            if c is not None:
                out.append(c)
        return out

    def set_owned_provinces(self, provinces: Iterable[str] | None) -> None:
        """Limit staleness to the provinces whose partitions this worker consumes (None: all)."""
        self.owned_provinces = None if provinces is None else frozenset(provinces)

    def _rules_for(self, feed: str) -> list[Rule]:
        return self._by_feed.get(feed, []) + self._by_feed.get(ANY_FEED, [])

    def _st(self, rule: Rule) -> dict[str, Any]:
        return self._state[rule.id][1]

    # --- inputs -----------------------------------------------------------------------------------

    def on_window(self, point: Mapping[str, Any], *, live: bool = False) -> list[Condition]:
        """A closed window (the dict of controlroom.schema.window_message, or the same keys with
        `window_start_ms`). `live`: an open window as it stands (agg.live); only thresholds judge it,
        stamped with its latest reading's time, so an alarm level crossed fires before the minute ends."""
        feed, province = str(point["feed"]), str(point["province"])
        dims: dict[str, str] = dict(point.get("dims") or {})
        dkey = dims_key(dims)
        ws = int(point["window_start"] if "window_start" in point else point["window_start_ms"])
        we = int(point.get("window_end") or ws + self.window_ms)
        skey = series_key(feed, province, dkey)
        last_ts = int(point.get("last_ts") or we)
        seen = self.last_seen.get(skey)
        if seen is None:
            self.last_seen[skey] = [last_ts, feed, province, dims]
        elif seen[0] is None or last_ts > seen[0]:
            seen[0] = last_ts
        out: list[Condition] = []
        for rule in self._rules_for(feed):
            if not rule.matches(feed, province, dims) or (live and rule.type != "threshold"):
                continue
            c: Condition | None = None
            if rule.type == "threshold":
                c = self._threshold(rule, point, feed, province, dims, dkey, last_ts if live else we)
            elif rule.type == "rate_of_change":
                c = self._rate(rule, point, feed, province, dims, dkey, ws, we)
            elif rule.type == "anomaly":
                c = self._anomaly(rule, point, feed, province, dims, dkey, ws, we)
            elif rule.type == "target":
                if rule.params["kind"] == "ratio":
                    c = self._ratio(rule, point, feed, province, dims, ws, we)
                else:
                    c = self._plan(rule, point, feed, province, dims, dkey, we)
            if c is not None:
                out.append(c)
        return out

    def on_quality(self, feed: str, window_start_ms: int, total: int, rejected: int, late: int) -> list[Condition]:
        """Counts of one feed's readings in one window: all received (valid, rejected and late alike),
        rejected by validation, and late. Several calls for one window (one per partition) add up."""
        out: list[Condition] = []
        for rule in self._rules_for(feed):
            if rule.type != "data_quality":
                continue
            p = rule.params
            hist: list[list[int]] = self._st(rule).setdefault(feed, [])
            for row in hist:
                if row[0] == window_start_ms:
                    row[1] += total
                    row[2] += rejected
                    row[3] += late
                    break
            else:
                hist.append([window_start_ms, total, rejected, late])
                hist.sort(key=lambda r: r[0])
            newest = hist[-1][0]
            period_ms = int(p["period_s"] * 1000)
            hist[:] = [r for r in hist if r[0] > newest - period_ms]
            tot = sum(r[1] for r in hist)
            rej = sum(r[2] for r in hist)
            lat = sum(r[3] for r in hist)
            bad = {"rejected": rej, "late": lat, "both": rej + lat}[p["count"]]
            at = newest + self.window_ms
            judged = tot >= p["min_total"] and tot > 0
            share = 100.0 * bad / tot if tot else 0.0
            active = judged and share > p["limit_pct"]
            ev = self._evidence(rule, {
                "method": f"share of {p['count']} readings over the last {p['period_s']:g} s",
                "total": tot, "rejected": rej, "late": lat, "share_pct": share, "limit_pct": p["limit_pct"],
                "min_total": p["min_total"], "windows": len(hist), "from_ms": hist[0][0], "to_ms": at})
            ctx = {"share_pct": share, "limit_pct": p["limit_pct"], "period_min": p["period_s"] / 60, "value": share}
            c = self._emit(rule, feed, "", {}, active, share, ev, at, rule.severity, ctx)
            if c is not None:
                out.append(c)
        return out

    def resumed(self, now_ms: int) -> None:
        """The caller can judge the clock again from `now_ms` (a start or restart, caught up with its inputs):
        silence before it is not held against a series that is not already alerting (see the module doc)."""
        self.resumed_ms = now_ms

    def _silence(self, fp: str, last: int | None, p: Mapping[str, Any], cadence_s: float,
                 now_ms: int) -> tuple[bool | None, int, int, float]:
        """(silent: True / False / None = not judged yet, silence counted in ms, counted from (ms), limit in ms)."""
        resumed = self.resumed_ms if self.resumed_ms is not None else now_ms
        limit_ms = max(p["cadences"] * cadence_s, p["min_silence_s"]) * 1000
        if fp in self.active:  # already alerting (perhaps before a restart): only a reading ends it
            if last is None:
                return True, now_ms - resumed, resumed, limit_ms
            return now_ms - last > limit_ms, now_ms - last, last, limit_ms
        since = max(last, resumed) if last is not None else resumed
        if since == resumed and now_ms - resumed <= cadence_s * 1000 + self.lateness_ms:
            return None, now_ms - since, since, limit_ms  # one cadence + lateness to be heard after a restart
        return now_ms - since > limit_ms, now_ms - since, since, limit_ms

    def _silence_evidence(self, last: int | None, since: int) -> dict[str, Any]:
        if last is not None and since == last:
            return {}
        return {"counted_from_ms": since,
                "counted_from": f"silence counted from the restart at {ms_to_iso(since)} (Control Room was not "
                                f"receiving before{'' if last is None else ': last reading ' + ms_to_iso(last)})"}

    def tick(self, now_ms: int) -> list[Condition]:
        """Time-driven rules (staleness, report deadlines): a series silent long enough fires with nothing arriving.
        A rule with `scope: feed` judges each feed as a whole: more than `min_silent_pct` of its series silent."""
        if self.resumed_ms is None:
            self.resumed_ms = now_ms
        out: list[Condition] = self._report_deadlines(now_ms) + self.judge_contracts(now_ms)
        rules = [r for r in self.rules.values() if r.type == "staleness"]
        if not rules:
            return out
        owned = self.owned_provinces
        # feed-wide rules: (rule id, feed) -> [series judged, silent, examples, newest reading]
        wide: dict[tuple[str, str], list[Any]] = {}
        for skey, (last, feed_id, province, dims) in self.last_seen.items():
            if owned is not None and province not in owned:
                continue
            feed = self.catalog.feeds.get(feed_id)
            if feed is None:
                continue
            for rule in rules:
                if not rule.matches(feed_id, province, dims):
                    continue
                if rule.params["scope"] == "feed":
                    fp = fingerprint(rule.id, feed_id, "", "")
                    silent, _, _, _ = self._silence(fp, last, rule.params, feed.cadence_s, now_ms)
                    acc = wide.setdefault((rule.id, feed_id), [0, 0, [], None])
                    acc[0] += silent is not None
                    if silent:
                        acc[1] += 1
                        if len(acc[2]) < SILENT_EXAMPLES:
                            acc[2].append(skey)
                    if last is not None and (acc[3] is None or last > acc[3]):
                        acc[3] = last
                    continue
                p = rule.params_for(province, skey.split("|", 2)[2])
                fp = fingerprint(rule.id, feed_id, province, dims_key(dims))
                active, silent_ms, since, limit_ms = self._silence(fp, last, p, feed.cadence_s, now_ms)
                if active is None or active == (fp in self.active):
                    continue  # no change: staleness reports transitions only (tick runs every second)
                ev = self._evidence(rule, {
                    "method": f"silent for more than max({p['cadences']:g} cadences x {feed.cadence_s:g} s, "
                              f"{p['min_silence_s']:g} s)",
                    "last_reading_ms": last, "silent_s": silent_ms / 1000, "limit_s": limit_ms / 1000,
                    "cadence_s": feed.cadence_s, "cadences": p["cadences"], **self._silence_evidence(last, since)})
                ctx = {"silent_s": silent_ms / 1000, "silent_min": silent_ms / 60000, "cadences": p["cadences"],
                       "value": silent_ms / 1000}
                c = self._emit(rule, feed_id, province, dict(dims), active, silent_ms / 1000, ev, now_ms,
                               rule.severity, ctx)
                if c is not None:
                    out.append(c)
        for (rid, feed_id), (judged, silent_n, examples, newest) in sorted(wide.items()):
            rule = self.rules[rid]
            p = rule.params
            fp = fingerprint(rid, feed_id, "", "")
            share = 100.0 * silent_n / judged if judged else 0.0
            if judged == 0:
                continue  # nothing judged yet (just after a restart): no verdict
            active = silent_n >= p["min_series"] and share > p["min_silent_pct"]
            if active == (fp in self.active):
                continue
            feed = self.catalog.feeds[feed_id]
            ev = self._evidence(rule, {
                "method": f"more than {p['min_silent_pct']:g} % of the feed's series (at least {p['min_series']}) "
                          f"silent for more than max({p['cadences']:g} cadences x {feed.cadence_s:g} s, "
                          f"{p['min_silence_s']:g} s)",
                "series_judged": judged, "series_silent": silent_n, "share_pct": share,
                "limit_pct": p["min_silent_pct"], "silent_examples": examples, "last_reading_ms": newest,
                "cadence_s": feed.cadence_s, "cadences": p["cadences"]})
            ctx = {"silent_series": silent_n, "series_total": judged, "share_pct": share,
                   "limit_pct": p["min_silent_pct"], "value": share}
            c = self._emit(rule, feed_id, "", {}, active, share, ev, now_ms, rule.severity, ctx)
            if c is not None:
                out.append(c)
        return out

    # --- report deadlines (controlroom/alerts/deadlines.py) ------------------------------------------

    def on_report(self, doc: Mapping[str, Any]) -> list[Condition]:
        """A report submitted (topic reports.submitted): its unit's deadline alerts end now, not at the next tick."""
        form, period, unit, at = str(doc["form"]), str(doc["period"]), str(doc["unit"]), int(doc["submitted_at"])
        self.reports.record(form, period, unit, at)
        out: list[Condition] = []
        for rule in self.rules.values():
            if rule.type == "report_deadline":
                c = self._report_ended(rule, fingerprint(rule.id, form, unit, dims_key({"period": period})), at)
                if c is not None:
                    out.append(c)
        return out

    def _report_deadlines(self, now_ms: int) -> list[Condition]:
        """Each report rule on every (form, period, unit) it judges now; transitions only (tick runs every second)."""
        if now_ms - self._ledger_pruned_ms > HOUR_MS:
            self.reports.prune(self.report_forms, now_ms)
            self._ledger_pruned_ms = now_ms
        out: list[Condition] = []
        for rule in [r for r in self.rules.values() if r.type == "report_deadline"]:
            forms = {c: f for c, f in self.report_forms.items() if rule.feed in (ANY_FEED, c)}
            units = [u for u in self._report_units if not rule.provinces or u in rule.provinces]
            seen: set[str] = set()
            for due in deadlines.judged(rule.params, forms, units, self.reports, now_ms):
                dims = {"period": due.period.label}
                fp = fingerprint(rule.id, due.form.code, due.unit, dims_key(dims))
                seen.add(fp)
                if due.missing == (fp in self.active):
                    continue
                ev, ctx = deadlines.describe(rule.params, due, now_ms,
                                             reporting_agency(due.form, due.unit, self._centers))
                c = self._emit(rule, due.form.code, due.unit, dims, due.missing, ctx["value"],
                               self._evidence(rule, ev), now_ms, rule.severity, ctx)
                if c is not None:
                    out.append(c)
            for fp in [fp for fp, rid in self.active.items() if rid == rule.id and fp not in seen]:
                c = self._report_ended(rule, fp, now_ms)  # its period left the rule's window
                if c is not None:
                    out.append(c)
        return out

    def _report_ended(self, rule: Rule, fp: str, at: int) -> Condition | None:
        """The alert `fp` of a report rule ends: the unit submitted, or its period is no longer judged."""
        if fp not in self.active:
            return None
        _, form, unit, dkey = fp.split("|", 3)
        period = dkey.partition("=")[2]
        submitted = self.reports.submitted_at(form, period, unit)
        ev = self._evidence(rule, {**deadlines.out_of_window_evidence(rule.params, submitted is not None),
                                   "form": form, "period": period, "unit": unit, "submitted_at_ms": submitted})
        return self._emit(rule, form, unit, {"period": period}, False, None, ev, at, rule.severity, {})

    def seed_plan(self, rule_id: str, province: str, dims: Mapping[str, str], year: int, cumulative: float) -> None:
        """Start a plan rule's cumulative sum from history (the warehouse), e.g. on a first start mid-year:
        the seed covers the year from 1 January, so the rule judges from the next window on."""
        rule = self.rules[rule_id]
        self._st(rule)[series_key(rule.feed, province, dims_key(dict(dims)))] = [year, cumulative, -(1 << 62)]

    # --- rule types -------------------------------------------------------------------------------

    def _threshold(self, rule: Rule, point: Mapping[str, Any], feed: str, province: str, dims: dict[str, str],
                   dkey: str, at: int) -> Condition | None:
        p = rule.params_for(province, dkey)
        ws = int(point["window_start"] if "window_start" in point else point["window_start_ms"])
        if self._stale_window(self._st(rule), series_key(feed, province, dkey), point, ws):
            return None
        x = metric_value(point, p["metric"])
        levels: list[dict[str, Any]] = p["levels"]
        above = levels[0]["op"] == "above"
        crossed = [lv for lv in levels if (x > lv["value"] if above else x < lv["value"])]
        # the most extreme level crossed decides the severity (báo động III over II over I)
        worst = (max if above else min)(crossed, key=lambda lv: lv["value"]) if crossed else None
        shown = worst or (min if above else max)(levels, key=lambda lv: lv["value"])
        ev = self._evidence(rule, {
            "method": f"{p['metric']} of the window {'>' if above else '<'} threshold",
            "window": self._window(point), "metric": p["metric"],
            "threshold": {"op": shown["op"], "value": shown["value"], "level": shown["name"],
                          "severity": shown["severity"]},
            "levels": levels, "override": f"{province}|{dkey}" in rule.overrides})
        ctx = {"metric": p["metric"], "level": shown["name"], "threshold": shown["value"],
               "op": ">" if above else "<", "value": x}
        return self._emit(rule, feed, province, dims, worst is not None, x, ev, at,
                          worst["severity"] if worst else rule.severity, ctx)

    def _stale_window(self, newest: dict[str, Any], skey: str, point: Mapping[str, Any], ws: int) -> bool:
        """Whether a threshold input says less than what was already judged for its series, so judging it
        would turn back a verdict on old news. Two ways:
        - an older window than the newest judged (e.g. a window closing after the next one was judged live);
        - the newest window, but an earlier state of the same partial (same source topic-partition) than
          one already judged: its `max_offset` (else `last_ts`) went back. A restarted worker does that: it
          restores the open window from its changelog, which may predate readings it had already published
          live, and republishes the window as it re-reads them; and agg.live may repeat or reorder.
        Partials of the same window from other source partitions (legacy province codes) are not stale.
        State per series: [newest window start, {"topic:partition": [max_offset, last_ts]}]."""
        entry = newest.get(skey)
        if isinstance(entry, int):  # a snapshot from before partial progress was kept: the window only
            entry = newest[skey] = [entry, {}]
        if entry is not None and ws < entry[0]:
            return True
        if entry is None or ws > entry[0]:
            entry = newest[skey] = [ws, {}]
        we = int(point.get("window_end") or ws + self.window_ms)
        offset = point.get("max_offset")
        progress = [int(offset) if offset is not None else -1, int(point.get("last_ts") or we)]
        part = f"{point.get('source_topic') or ''}:{point.get('source_partition', '')}"
        seen = entry[1].get(part)
        if seen is not None:
            # offsets order the states of one partial (both grow as it fills); without offsets, event time
            behind = progress[0] < seen[0] if progress[0] >= 0 and seen[0] >= 0 else progress[1] < seen[1]
            if behind:
                return True
        entry[1][part] = progress if seen is None else [max(progress[0], seen[0]), max(progress[1], seen[1])]
        return False

    def _rate(self, rule: Rule, point: Mapping[str, Any], feed: str, province: str, dims: dict[str, str],
              dkey: str, ws: int, at: int) -> Condition | None:
        p = rule.params_for(province, dkey)
        x = metric_value(point, p["metric"])
        lookback = int(p["lookback_s"] * 1000)
        series = self._st(rule).setdefault(series_key(feed, province, dkey), [ws, []])
        hist: list[list[float]] = series[1]
        if hist and ws < hist[-1][0]:
            return None  # an older window, out of order: the comparison it would make is stale
        if hist and ws == hist[-1][0]:  # a partial of the same window from another partition
            prev_x = hist.pop()[1]
            x = x + prev_x if p["metric"] in ("sum", "count") else x
        ev_extra: dict[str, Any]
        change: float | None = None
        if p["mode"] == "extreme":
            earlier = [h for h in hist if h[0] >= ws - lookback]
            hist[:] = earlier + [[ws, x]]
            cands = []
            if earlier and p["direction"] in ("up", "both"):
                lo = min(earlier, key=lambda h: h[1])
                if abs(lo[1]) > p["min_base"] and lo[1] != 0:
                    cands.append(((x - lo[1]) / abs(lo[1]) * 100, lo))
            if earlier and p["direction"] in ("down", "both"):
                hi = max(earlier, key=lambda h: h[1])
                if abs(hi[1]) > p["min_base"] and hi[1] != 0:
                    cands.append(((x - hi[1]) / abs(hi[1]) * 100, hi))
            if not cands:
                return self._unjudged(rule, feed, province, dims, at)
            change, ref = max(cands, key=lambda c: abs(c[0]))
            reference, ref_ws = ref[1], int(ref[0])
            ev_extra = {"method": f"change of {p['metric']} against the {'lowest' if change >= 0 else 'highest'} "
                                  f"window of the last {p['lookback_s']:g} s",
                        "reference": reference, "reference_window_start_ms": ref_ws}
        else:
            hist[:] = [h for h in hist if h[0] > ws - 2 * lookback] + [[ws, x]]
            if series[0] > ws - 2 * lookback + self.window_ms:
                return self._unjudged(rule, feed, province, dims, at)  # not two full periods seen yet
            current = sum(h[1] for h in hist if h[0] > ws - lookback)
            reference = sum(h[1] for h in hist if h[0] <= ws - lookback)
            if reference <= p["min_base"] or reference == 0:
                return self._unjudged(rule, feed, province, dims, at)
            change = (current - reference) / abs(reference) * 100
            x = current  # the value compared is the period's total, not the last window
            ev_extra = {"method": f"total {p['metric']} of the last {p['lookback_s']:g} s against the "
                                  f"{p['lookback_s']:g} s before", "reference": reference, "current": current}
        d = p["direction"]
        active = (change >= p["pct"] and d in ("up", "both")) or (change <= -p["pct"] and d in ("down", "both"))
        ev = self._evidence(rule, {**ev_extra, "window": self._window(point), "metric": p["metric"],
                                   "value": x, "change_pct": change, "limit_pct": p["pct"], "direction": d,
                                   "lookback_s": p["lookback_s"]})
        ctx = {"metric": p["metric"], "change_pct": change, "reference": ev_extra["reference"],
               "lookback_min": p["lookback_s"] / 60, "value": x, "threshold": p["pct"]}
        return self._emit(rule, feed, province, dims, active, x, ev, at, rule.severity, ctx)

    def _anomaly(self, rule: Rule, point: Mapping[str, Any], feed: str, province: str, dims: dict[str, str],
                 dkey: str, ws: int, at: int) -> Condition | None:
        p = rule.params_for(province, dkey)
        x = metric_value(point, p["metric"])
        seasonal = p["seasonal"] == "hour_of_day"
        bucket = int(((ws + p["tz_offset_h"] * HOUR_MS) // HOUR_MS) % 24) if seasonal else 0
        buckets = self._st(rule).setdefault(series_key(feed, province, dkey), [[0, 0.0, 0.0] for _ in
                                                                              range(24 if seasonal else 1)])
        b = buckets[bucket]
        n, mean, var = int(b[0]), float(b[1]), float(b[2])
        sd = max(math.sqrt(var), p["min_sd"])  # the floor keeps a flat series from alarming on noise
        k = p["k"]
        c: Condition | None
        if n >= p["min_samples"]:
            z = (x - mean) / sd
            d = p["direction"]
            active = (z >= k and d in ("up", "both")) or (z <= -k and d in ("down", "both"))
            where = f"hour {bucket:02d} (UTC{p['tz_offset_h']:+g})" if seasonal else "all hours"
            ev = self._evidence(rule, {
                "method": f"z-score of {p['metric']} against an EWMA (alpha={p['alpha']:g}) mean and variance "
                          f"of this series' windows in {where}; sd floored at {p['min_sd']:g}",
                "window": self._window(point), "metric": p["metric"], "value": x,
                "baseline": mean, "baseline_sd": sd, "deviation": x - mean, "z": z, "k": k,
                "direction": d, "samples": n, "hour_bucket": bucket if seasonal else None, "alpha": p["alpha"]})
            ctx = {"metric": p["metric"], "baseline": mean, "deviation": x - mean, "z": z, "value": x,
                   "threshold": k}
            c = self._emit(rule, feed, province, dims, active, x, ev, at, rule.severity, ctx)
            # an outlier enters the baseline clipped to k sd, so one spike does not teach it that spikes are normal
            x = min(max(x, mean - k * sd), mean + k * sd)
        else:
            c = self._unjudged(rule, feed, province, dims, at)
        a = max(p["alpha"], 1.0 / (n + 1))  # a running mean until 1/alpha samples: no bias to the first value
        diff = x - mean
        incr = a * diff
        b[0], b[1], b[2] = n + 1, mean + incr, (1 - a) * (var + diff * incr)
        return c

    def _ratio(self, rule: Rule, point: Mapping[str, Any], feed: str, province: str, dims: dict[str, str],
               ws: int, at: int) -> Condition | None:
        p = rule.params
        gdims = {k: dims[k] for k in p["by"] if k in dims}
        gkey = series_key(feed, province, dims_key(gdims))
        x = metric_value(point, p["metric"])
        in_num = all(dims.get(k) == v for k, v in p["numerator"].items())
        in_den = all(dims.get(k) == v for k, v in p["denominator"].items())
        if not (in_num or in_den):
            return None
        hist: list[list[float]] = self._st(rule).setdefault(gkey, [])
        for row in hist:
            if row[0] == ws:
                break
        else:
            row = [ws, 0.0, 0.0]
            hist.append(row)
            hist.sort(key=lambda r: r[0])
        row[1] += x if in_num else 0.0
        row[2] += x if in_den else 0.0
        newest = int(hist[-1][0])
        period_ms = int(p["period_s"] * 1000)
        hist[:] = [r for r in hist if r[0] > newest - period_ms]
        num = sum(r[1] for r in hist)
        den = sum(r[2] for r in hist)
        at = max(at, newest + self.window_ms)
        if den < p["min_denominator"] or den <= 0:
            return self._unjudged(rule, feed, province, gdims, at)
        ratio = 100.0 * num / den
        ev = self._evidence(rule, {
            "method": f"sum of {p['metric']} where {p['numerator']} / sum where {p['denominator'] or 'any'} "
                      f"over the last {p['period_s']:g} s",
            "numerator": num, "denominator": den, "ratio_pct": ratio, "target_pct": p["below_pct"],
            "windows": len(hist), "from_ms": int(hist[0][0]), "to_ms": at, "last_window": self._window(point)})
        ctx = {"ratio_pct": ratio, "target_pct": p["below_pct"], "period_min": p["period_s"] / 60, "value": ratio}
        return self._emit(rule, feed, province, gdims, ratio < p["below_pct"], ratio, ev, at, rule.severity, ctx)

    def _plan(self, rule: Rule, point: Mapping[str, Any], feed: str, province: str, dims: dict[str, str],
              dkey: str, at: int) -> Condition | None:
        p = rule.params_for(province, dkey)
        year, start, end = _year_bounds(at - 1, p["tz_offset_h"])
        ws = at - self.window_ms
        # [year, cumulative, first window counted]: a sum that began after 1 January is not the year's
        acc = self._st(rule).setdefault(series_key(feed, province, dkey), [year, 0.0, ws])
        if acc[0] != year:
            acc[:] = [year, 0.0, start]  # a new year starts from zero, and from its first day
        acc[1] += metric_value(point, p["metric"])
        if len(acc) > 2 and acc[2] > start + PLAN_COVERAGE_SLACK_MS:
            # judging a part-year sum against the whole year's plan would invent a shortfall
            return self._unjudged(rule, feed, province, dims, at)
        actual = float(acc[1])
        fraction = (at - start) / (end - start)
        plan = p["yearly_target"] * fraction  # the plan curve: linear over the local calendar year
        floor = plan * (1 - p["tolerance_pct"] / 100)
        behind = 100.0 * (plan - actual) / plan if plan > 0 else 0.0
        ev = self._evidence(rule, {
            "method": f"cumulative {p['metric']} since 1 January (UTC{p['tz_offset_h']:+g}) against a linear plan "
                      f"of the yearly target; fires when more than {p['tolerance_pct']:g} % behind",
            "actual": actual, "plan": plan, "yearly_target": p["yearly_target"], "year": year,
            "year_fraction": fraction, "behind_pct": behind, "tolerance_pct": p["tolerance_pct"],
            "last_window": self._window(point)})
        ctx = {"plan": plan, "actual": actual, "behind_pct": behind, "value": actual,
               "target_pct": 100 - p["tolerance_pct"]}
        return self._emit(rule, feed, province, dims, actual < floor, actual, ev, at, rule.severity, ctx)

    # --- helpers ----------------------------------------------------------------------------------

    def _unjudged(self, rule: Rule, feed: str, province: str, dims: dict[str, str], at: int) -> Condition | None:
        """Not enough data for a verdict: an alert that was active resolves (it cannot be shown to hold)."""
        ev = self._evidence(rule, {"reason": "not enough data for a verdict"})
        return self._emit(rule, feed, province, dims, False, None, ev, at, rule.severity, {})

    def _window(self, point: Mapping[str, Any]) -> dict[str, Any]:
        ws = int(point["window_start"] if "window_start" in point else point["window_start_ms"])
        return {"start_ms": ws, "end_ms": int(point.get("window_end") or ws + self.window_ms),
                **{k: point[k] for k in ("count", "sum", "min", "max", "avg", "last") if k in point}}

    @staticmethod
    def _evidence(rule: Rule, extra: dict[str, Any]) -> dict[str, Any]:
        return {"rule_id": rule.id, "rule_version": rule.version, "rule_type": rule.type, **extra}

    def _emit(self, rule: Rule, feed: str, province: str, dims: dict[str, str], active: bool, value: float | None,
              evidence: dict[str, Any], at: int, severity: str, ctx: Mapping[str, Any]) -> Condition | None:
        fp = fingerprint(rule.id, feed, province, dims_key(dims))
        if active:
            self.active[fp] = rule.id
        elif self.active.pop(fp, None) is None:
            return None  # inactive and never active: nothing to report
        f = self.catalog.feeds.get(feed)
        prov = self.catalog.provinces.get(province)
        full: dict[str, Any] = {name: "" for name in TEMPLATE_FIELDS}
        full.update({
            "rule_id": rule.id, "severity": severity, "feed": feed, "feed_vi": f.name_vi if f else feed,
            "feed_en": f.name_en if f else feed, "unit": f.unit if f else "", "province": province,
            "province_vi": prov.name_vi if prov else ("Toàn quốc" if province == NATIONAL else ""),
            "province_en": prov.name_en if prov else ("National" if province == NATIONAL else ""),
            "dims": dims_key(dims), "value": value if value is not None else 0.0})
        for name in ("baseline", "deviation", "z", "change_pct", "reference", "lookback_min", "silent_s",
                     "silent_min", "cadences", "silent_series", "series_total", "share_pct", "limit_pct",
                     "period_min", "ratio_pct", "target_pct", "plan", "actual", "behind_pct", "threshold"):
            full[name] = 0.0  # numeric placeholders always hold a number, so '{z:.1f}' never breaks
        full.update(ctx)
        v = full["value"]
        full["value_text"] = f"{v:,.0f}" if abs(v) >= 1000 or float(v).is_integer() else f"{v:.4g}"
        return Condition(rule=rule, fingerprint=fp, feed=feed, province=province, dims=dims, active=active,
                         value=value, evidence=evidence, at_ms=at, severity=severity,
                         summary_vi=_fmt(rule.summary_vi or DEFAULT_SUMMARY_VI, full),
                         summary_en=_fmt(rule.summary_en or DEFAULT_SUMMARY_EN, full))

    # --- persistence ------------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return orjson.dumps({"v": SNAPSHOT_VERSION, "resumed_ms": self.resumed_ms, "last_seen": self.last_seen,
                             "active": self.active, "state": self._state, "reports": self.reports.snapshot()})

    def restore(self, data: bytes) -> None:
        """Load a snapshot taken by any engine; state of rules that changed shape since is dropped."""
        doc = orjson.loads(data)
        if doc.get("v") != SNAPSHOT_VERSION:
            raise ValueError(f"unknown rule engine snapshot version {doc.get('v')!r}")
        self.resumed_ms = doc.get("resumed_ms", doc.get("started_ms"))  # "started_ms": snapshots before restarts
        self.last_seen.update(doc["last_seen"])
        self.active = dict(doc["active"])
        self.reports.restore(doc.get("reports") or {})  # absent from snapshots before report rules
        for rid, (sig, st) in doc["state"].items():
            if rid in self._state and self._state[rid][0] == sig:
                self._state[rid] = (sig, st)
