"""Backtesting a rule on stored history: the alerts it would have raised. Pure code, no I/O.

The stored windows of a range (agg_1m, or a rollup for long ranges, as WindowMessage dicts in window order)
go through the live alerter's own code, `AlertingCore.on_closed`, and its clock, `AlertingCore.tick`, driven at
every window end (also through gaps with no window at all, so a staleness rule fires on a silence): no second
implementation of any rule type or of the lifecycle. The proposed rule and the rule's current version run side
by side on the same windows, so their difference is the rule change alone.

State starts empty at `from`, as in an alerter started then: a series never heard from counts as silent since
`from`; an anomaly baseline, a rate's lookback, a ratio's period fill from the first windows of the range.

An **episode** is one alert from the moment its condition began to hold to its resolve; only episodes that
reached `firing` count as raised (`pending_only` counts those that resolved while still pending). Its day is the
day it fired, in Asia/Ho_Chi_Minh (UTC+7 all year: Vietnam has no daylight saving time).

Resolution: the finest table whose window count (series the rules match × steps of the range) fits
WINDOW_BUDGET. Measured (bench/backtest_bench.py) the evaluation costs 15-30 µs per window and rule version,
so the budget keeps the answer of both versions within a few seconds; a rule on one feed of 68 series (water
level) is judged on 1-minute windows up to 49 hours back, on hourly ones up to 122 days, on daily ones beyond.
A rollup's window is the hour (day): `max`, `min`, `last` are those of the hour, `avg` its mean, and `sum` and
`count` hourly totals, so a threshold on a per-minute sum means something else there (the answer warns).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from controlroom.alerts.core import AlertingCore
from controlroom.alerts.rules import ANY_FEED, Rule, parse_rule
from controlroom.catalog import Catalog
from controlroom.errors import ControlRoomError
from controlroom.schema import SEVERITIES, AlertEvent, WindowMessage, window_message
from controlroom.schema import parse_instant as schema_parse_instant

DAY_MS = 86_400_000
MAX_RANGE_MS = 400 * DAY_MS  # more than a year: a yearly plan or a seasonal comparison fits, a decade does not
WINDOW_BUDGET = 200_000  # windows per rule version and backtest (series × steps); see the module text
EPISODES_SHOWN = 100
VN_TZ = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")


@dataclass(frozen=True, slots=True)
class Resolution:
    table: str  # agg_1m | agg_1h | agg_1d
    step_s: int


RESOLUTIONS = (Resolution("agg_1m", 60), Resolution("agg_1h", 3600), Resolution("agg_1d", 86_400))


class BacktestError(ControlRoomError):
    """A backtest request that cannot run; the message starts with the field it is about ("to: …")."""


# --- the request --------------------------------------------------------------------------------------------



def parse_instant(value: Any, field: str) -> int:
    """controlroom.schema.parse_instant, raising BacktestError (a 422 naming the field)."""
    return schema_parse_instant(value, field, BacktestError)


def check_range(from_ms: int, to_ms: int) -> None:
    if to_ms <= from_ms:
        raise BacktestError("to: must be after from")
    if to_ms - from_ms > MAX_RANGE_MS:
        raise BacktestError(f"to: the range is {(to_ms - from_ms) / DAY_MS:.1f} days; a backtest covers at most "
                            f"{MAX_RANGE_MS // DAY_MS} days")


def parse_candidate(doc: Any, catalog: Catalog, current: Mapping[str, Any] | None) -> Rule:
    """The proposed rule, validated by the rules' own parser (RuleError naming `rule.<field>`). Without a
    version it gets the next one after the current version (as a PUT would)."""
    if isinstance(doc, dict) and "version" not in doc:
        doc = {**doc, "version": int(current["version"]) + 1 if current else 1}
    return parse_rule(doc, "rule", catalog)


def series_matched(rules: Iterable[Rule], catalog: Catalog) -> int:
    """How many catalog series at least one of `rules` judges."""
    rules = list(rules)
    return sum(1 for f, p, d in catalog.iter_series() if any(r.matches(f.id, p, d) for r in rules))


def choose_resolution(rules: Iterable[Rule], catalog: Catalog, from_ms: int, to_ms: int) -> tuple[Resolution, str]:
    """The finest resolution whose window count fits the budget (the coarsest one otherwise), and why."""
    n = max(1, series_matched(rules, catalog))
    for res in RESOLUTIONS:
        windows = n * -(-(to_ms - from_ms) // (res.step_s * 1000))
        if windows <= WINDOW_BUDGET:
            return res, f"{n} series × {windows // n} windows of {res.step_s} s fit the budget of {WINDOW_BUDGET:,}"
    res = RESOLUTIONS[-1]
    return res, f"{n} series over {(to_ms - from_ms) / DAY_MS:.0f} days: daily windows, the coarsest stored"


def stored_window(row: Mapping[str, Any], step_s: int) -> WindowMessage:
    """A row of agg_1m or of a rollup (ws_ms, last_ts_ms and the figures) as the alerter's input."""
    ws = int(row["ws_ms"])
    return window_message(feed=str(row["feed"]), province=str(row["province"]), dims=dict(row["dims"] or {}),
                          window_start_ms=ws, window_s=step_s, count=int(row["count"]), total=float(row["sum"]),
                          vmin=float(row["min"]), vmax=float(row["max"]), last=float(row["last"]),
                          last_ts_ms=int(row["last_ts_ms"]), closed_ms=ws + step_s * 1000,
                          source_partition=int(row.get("part") or 0))


# --- the run ------------------------------------------------------------------------------------------------

@dataclass
class Episode:
    fingerprint: str
    alert_id: str
    feed: str
    province: str
    dims: dict[str, str]
    started_ms: int
    fired_ms: int | None = None
    ended_ms: int | None = None
    peak_severity: str = "info"
    value: float | None = None
    summary_en: str = ""
    summary_vi: str = ""
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)


class EpisodeLog:
    """Alert events in, episodes out."""

    def __init__(self) -> None:
        self.open: dict[str, Episode] = {}
        self.done: list[Episode] = []
        self.pending_only = 0

    def add(self, events: Iterable[AlertEvent]) -> None:
        for e in events:
            fp, kind = e["fingerprint"], e["event"]
            ep = self.open.get(fp)
            if ep is None:
                if kind not in ("pending", "firing"):
                    continue
                ep = self.open[fp] = Episode(fp, e["alert_id"], e["feed"], e["province"], dict(e["dims"]),
                                             int(e["starts_at"]), peak_severity=e["severity"])
            if SEVERITIES.index(e["severity"]) > SEVERITIES.index(ep.peak_severity):
                ep.peak_severity = e["severity"]
            if kind == "firing" and ep.fired_ms is None:
                ep.fired_ms, ep.value, ep.evidence = int(e["event_at"]), e["value"], dict(e["evidence"])
                ep.summary_en, ep.summary_vi = e["summary_en"], e["summary_vi"]
            elif kind == "resolved":
                del self.open[fp]
                ep.ended_ms = int(e["event_at"])
                if ep.fired_ms is None:
                    self.pending_only += 1
                else:
                    self.done.append(ep)

    def episodes(self) -> list[Episode]:
        """Every episode that fired, still open ones included (ended None), by firing time."""
        fired = self.done + [ep for ep in self.open.values() if ep.fired_ms is not None]
        return sorted(fired, key=lambda ep: (ep.fired_ms or 0, ep.province, ep.fingerprint))


class _Run:
    """One rule version on the alerter's core, limited to the catalog feeds it can judge (the staleness clock
    then walks only those series, not all 2,146)."""

    def __init__(self, rule_doc: Mapping[str, Any], rule: Rule, catalog: Catalog, step_s: int) -> None:
        feeds = catalog.feeds if rule.feed == ANY_FEED else {rule.feed: catalog.feeds[rule.feed]}
        scoped = dataclasses.replace(catalog, feeds=feeds)
        # judged as if enabled: a backtest of a disabled rule asks what it would do if it were on
        self.core = AlertingCore(scoped, [{**rule_doc, "enabled": True}], window_s=step_s, grafana_url=None)
        self.log = EpisodeLog()
        self.rule = rule


def _windows_by_time(rows: Iterable[Mapping[str, Any]], step_s: int) -> Iterator[WindowMessage]:
    last = -1
    for row in rows:
        w = stored_window(row, step_s)
        if w["window_start"] < last:
            raise ValueError("backtest: windows must come in window order")
        last = w["window_start"]
        yield w


@dataclass(frozen=True)
class Plan:
    """A validated backtest: the rules, the range and the windows to read."""
    rule_doc: dict[str, Any]
    rule: Rule
    current_doc: dict[str, Any] | None
    current: Rule | None
    from_ms: int
    to_ms: int
    resolution: Resolution
    why: str

    @property
    def rules(self) -> list[Rule]:
        return [self.rule] if self.current is None else [self.rule, self.current]

    @property
    def feeds(self) -> tuple[str, ...] | None:
        """The feeds whose windows the rules need (None: every feed)."""
        feeds = {r.feed for r in self.rules}
        return None if ANY_FEED in feeds else tuple(sorted(feeds))

    @property
    def span(self) -> tuple[int, int]:
        """[from, to) widened to whole windows of the resolution."""
        size = self.resolution.step_s * 1000
        return self.from_ms - self.from_ms % size, -(-self.to_ms // size) * size


def plan_backtest(rule_doc: Any, current_doc: Mapping[str, Any] | None, from_ms: int, to_ms: int, catalog: Catalog,
                  *, resolution: Resolution | None = None) -> Plan:
    """Validate a request (BacktestError or RuleError, naming the field) and choose its resolution (or take
    the one given, e.g. by the benchmark)."""
    check_range(from_ms, to_ms)
    rule = parse_candidate(rule_doc, catalog, current_doc)
    if rule.type == "report_deadline":  # judged on submissions, which are not windows of a feed
        raise BacktestError("rule.type: a report_deadline rule cannot be backtested: GET /reports/compliance "
                            "says who reported on time for past periods")
    current = None if current_doc is None else parse_rule(dict(current_doc), "current", catalog)
    rules = [rule] if current is None else [rule, current]
    res, why = (resolution, "as asked") if resolution is not None else choose_resolution(rules, catalog, from_ms,
                                                                                         to_ms)
    return Plan({**rule_doc, "version": rule.version}, rule, None if current_doc is None else dict(current_doc),
                current, from_ms, to_ms, res, why)


def run_backtest(plan: Plan, rows: Iterable[Mapping[str, Any]], catalog: Catalog) -> dict[str, Any]:
    """The alerts the plan's rule (and the rule's version in force, if any) would have raised on `rows`: the
    stored windows of `plan.resolution` over `plan.span`, of `plan.feeds`, in window order (the caller reads
    them). Returns the answer of POST /rules/backtest."""
    resolution = plan.resolution
    runs = [_Run(plan.rule_doc, plan.rule, catalog, resolution.step_s)]
    if plan.current_doc is not None and plan.current is not None:
        runs.append(_Run(plan.current_doc, plan.current, catalog, resolution.step_s))
    step = resolution.step_s * 1000
    lo, hi = plan.span
    for r in runs:
        r.log.add(r.core.tick(lo))  # the clock starts: series never heard from are silent from here
    next_tick, windows, series = lo + step, 0, set()
    for w in _windows_by_time(rows, resolution.step_s):
        ws = w["window_start"]
        if ws < lo or ws >= hi:
            continue
        while next_tick <= ws:  # every window ending at next_tick has been judged: the clock moves on
            for r in runs:
                r.log.add(r.core.tick(next_tick))
            next_tick += step
        windows += 1
        series.add((w["feed"], w["province"], w["dims_key"]))
        for r in runs:
            r.log.add(r.core.on_closed(w))
    while next_tick <= hi:  # through the silence at the end of the range too
        for r in runs:
            r.log.add(r.core.tick(next_tick))
        next_tick += step
    candidate = plan.rule
    proposed = runs[0].log.episodes()
    out: dict[str, Any] = {
        "rule_id": candidate.id, "rule_version": candidate.version, "rule_type": candidate.type,
        "from": iso(lo), "to": iso(hi),
        "resolution": {"table": resolution.table, "step_s": resolution.step_s, "why": plan.why},
        "windows": windows, "series": len(series), "notes": notes(candidate, resolution),
        "alerts": counts(proposed, runs[0].log.pending_only),
        "episodes": [episode_doc(ep) for ep in proposed[:EPISODES_SHOWN]],
        "episodes_truncated": len(proposed) > EPISODES_SHOWN,
    }
    if len(runs) == 1:
        out["current"] = None
        return out
    current = runs[1].log.episodes()
    only_new, only_current = difference(proposed, current)
    out["current"] = {"rule_version": runs[1].rule.version, "alerts": counts(current, runs[1].log.pending_only)}
    out["diff"] = {"only_proposed": len(only_new), "only_current": len(only_current),
                   "in_both": len(proposed) - len(only_new),
                   "episodes_only_proposed": [episode_doc(ep) for ep in only_new[:EPISODES_SHOWN]],
                   "episodes_only_current": [episode_doc(ep) for ep in only_current[:EPISODES_SHOWN]]}
    return out


# --- the answer ---------------------------------------------------------------------------------------------

def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, VN_TZ).date().isoformat()


def counts(episodes: list[Episode], pending_only: int) -> dict[str, Any]:
    return {"total": len(episodes), "pending_only": pending_only,
            "per_day": dict(sorted(Counter(local_day(ep.fired_ms or 0) for ep in episodes).items())),
            "per_province": dict(sorted(Counter(ep.province for ep in episodes).items())),
            "per_severity": {s: n for s in SEVERITIES if (n := sum(ep.peak_severity == s for ep in episodes))}}


def episode_doc(ep: Episode) -> dict[str, Any]:
    return {"fingerprint": ep.fingerprint, "alert_id": ep.alert_id, "feed": ep.feed, "province": ep.province,
            "dims": ep.dims, "started": iso(ep.started_ms), "fired": iso(ep.fired_ms), "ended": iso(ep.ended_ms),
            "peak_severity": ep.peak_severity, "value": ep.value, "summary_en": ep.summary_en,
            "summary_vi": ep.summary_vi, "evidence": ep.evidence}


def difference(a: list[Episode], b: list[Episode]) -> tuple[list[Episode], list[Episode]]:
    """Episodes of `a` that no episode of `b` overlaps (same fingerprint, intervals overlapping), and of `b`
    that none of `a` does. A threshold moved a little shifts an episode's start, not its identity."""
    def spans(eps: list[Episode]) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        for ep in eps:
            out.setdefault(ep.fingerprint, []).append(_span(ep))
        return out

    def alone(eps: list[Episode], other: dict[str, list[tuple[int, int]]]) -> list[Episode]:
        return [ep for ep in eps
                if not any(s < _span(ep)[1] and _span(ep)[0] < e for s, e in other.get(ep.fingerprint, []))]

    return alone(a, spans(b)), alone(b, spans(a))


def _span(ep: Episode) -> tuple[int, int]:
    end = ep.ended_ms if ep.ended_ms is not None else 1 << 62
    return ep.started_ms, max(end, ep.started_ms + 1)


def notes(rule: Rule, res: Resolution) -> list[str]:
    """What the reader of the answer must know to read it right."""
    out = []
    if res.step_s > 60:
        out.append(f"windows of {res.step_s} s ({res.table}): max, min and last are those of the window, avg its "
                   "mean, sum and count its totals; staleness sees only gaps longer than a window")
        metrics = {rule.params.get("metric")} | {p.get("metric") for p in rule.overrides.values()}
        if metrics & {"sum", "count"} and rule.type == "threshold":
            out.append(f"params.metric: a threshold on a sum or count is judged on {res.step_s} s totals here, "
                       "not per minute: shorten the range for 1-minute windows")
    if rule.type == "data_quality":
        out.append("data_quality: rejected and late readings are not replayed, only totals: it cannot fire here")
    if rule.type == "target" and rule.params.get("kind") == "plan":
        out.append("target plan: judged only on a sum from 1 January; a range starting later stays unjudged")
    return out

