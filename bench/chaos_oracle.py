"""The chaos suite's oracle: pure functions over rows fetched from ClickHouse and what the harness published.
No I/O, no clock: tests/unit/test_chaos_oracle.py feeds it hand-made rows.

What one run must satisfy (issue 11, item 5):
1. raw exact: the distinct event_ids published == the event_ids in `readings FINAL`, one row each;
2. for every series (feed, province, dims_key) and minute, `agg_1m FINAL` summed over source_partition
   (count, sum, min, max; last = the partial with the latest last_ts) equals the recomputation from
   `readings FINAL` (count, sum, min, max, value at the latest ts), sums within a relative 1e-9; every
   series-minute of the raw readings is in agg_1m and none other;
3. every event_id in `late_readings FINAL` was published deliberately late (beyond the allowed lateness);
   with a `status` column, each of those within the amend horizon says `amended`;
4. every expected alert event (fingerprint, seq, event) is in `alert_events` exactly once, nothing else is,
   and no (alert_id, seq) holds two different events;
5. every expected notification reached the webhook at least once, and one event never came with two
   different idempotency keys.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

WINDOW_MS = 60_000
REL_TOL = 1e-9
SHOW = 8  # ids or keys quoted per violation message

SeriesMinute = tuple[str, str, str, int]  # feed, province, dims_key, window_start_ms
Row = Mapping[str, Any]


def _sample(items: Iterable[Any]) -> str:
    items = sorted(items, key=str)
    more = f" … (+{len(items) - SHOW})" if len(items) > SHOW else ""
    return ", ".join(str(i) for i in items[:SHOW]) + more


# --- 1. raw readings -------------------------------------------------------------------------------------

@dataclass
class RawReport:
    published: int  # distinct event_ids published
    stored_rows: int  # rows of readings FINAL
    lost: list[str] = field(default_factory=list)  # published, not stored
    unknown: list[str] = field(default_factory=list)  # stored, never published
    duplicated: dict[str, int] = field(default_factory=dict)  # event_id -> rows in readings FINAL (> 1)

    @property
    def extra_rows(self) -> int:
        return sum(n - 1 for n in self.duplicated.values()) + len(self.unknown)

    def violations(self) -> list[str]:
        out = []
        if self.lost:
            out.append(f"raw: {len(self.lost)} published readings missing from readings FINAL: {_sample(self.lost)}")
        if self.duplicated:
            out.append(f"raw: {len(self.duplicated)} event_ids stored more than once ({self.extra_rows} extra rows): "
                       f"{_sample(f'{k}×{n}' for k, n in self.duplicated.items())}")
        if self.unknown:
            out.append(f"raw: {len(self.unknown)} stored event_ids were never published: {_sample(self.unknown)}")
        return out


def check_raw(published_ids: Iterable[str], stored_ids: Iterable[str]) -> RawReport:
    """`stored_ids`: the event_id of every row of `readings FINAL` (one per row, so copies show)."""
    published = set(published_ids)
    counts = Counter(stored_ids)
    return RawReport(
        published=len(published), stored_rows=sum(counts.values()),
        lost=sorted(published - counts.keys()), unknown=sorted(counts.keys() - published),
        duplicated={k: n for k, n in sorted(counts.items()) if n > 1})


# --- 2. aggregates -----------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MinuteAgg:
    count: int
    total: float
    vmin: float
    vmax: float
    last_ts: int
    lasts: frozenset[float]  # the value(s) at last_ts: with a tie either is a right `last`


def _fold(items: Iterable[tuple[int, float, float, float, int, frozenset[float]]]) -> MinuteAgg:
    count, total, lo, hi, last_ts, lasts = 0, 0.0, math.inf, -math.inf, -(1 << 62), frozenset[float]()
    for n, s, mn, mx, ts, vals in items:
        count, total, lo, hi = count + n, total + s, min(lo, mn), max(hi, mx)
        if ts > last_ts:
            last_ts, lasts = ts, vals
        elif ts == last_ts:
            lasts = lasts | vals
    return MinuteAgg(count, total, lo, hi, last_ts, lasts)


def recompute(raw_rows: Iterable[Row], window_ms: int = WINDOW_MS) -> dict[SeriesMinute, MinuteAgg]:
    """Per series-minute from raw readings (event_id, feed, province, dims_key, ts [epoch ms], value):
    count(), sum(value), min, max, argMax(value, ts)."""
    groups: dict[SeriesMinute, list[tuple[int, float, float, float, int, frozenset[float]]]] = defaultdict(list)
    for r in raw_rows:
        ts, v = int(r["ts"]), float(r["value"])
        groups[(str(r["feed"]), str(r["province"]), str(r["dims_key"]), ts - ts % window_ms)].append(
            (1, v, v, v, ts, frozenset({v})))
    return {k: _fold(v) for k, v in groups.items()}


def stored_aggregates(agg_rows: Iterable[Row]) -> dict[SeriesMinute, MinuteAgg]:
    """`agg_1m FINAL` rows (feed, province, dims_key, window_start [ms], count, sum, min, max, last, last_ts [ms]),
    one per source_partition, summed as every reader does."""
    groups: dict[SeriesMinute, list[tuple[int, float, float, float, int, frozenset[float]]]] = defaultdict(list)
    for a in agg_rows:
        key = (str(a["feed"]), str(a["province"]), str(a["dims_key"]), int(a["window_start"]))
        groups[key].append((int(a["count"]), float(a["sum"]), float(a["min"]), float(a["max"]), int(a["last_ts"]),
                            frozenset({float(a["last"])})))
    return {k: _fold(v) for k, v in groups.items()}


@dataclass
class AggReport:
    series_minutes: int  # in the raw readings
    missing_minutes: list[SeriesMinute] = field(default_factory=list)  # in raw, not in agg_1m
    excess_minutes: list[SeriesMinute] = field(default_factory=list)  # in agg_1m, not in raw
    mismatched: dict[SeriesMinute, list[str]] = field(default_factory=dict)  # key -> "field: expected vs got"
    missing_readings: int = 0  # readings the aggregates lack (count short of raw, whole minutes included)
    excess_readings: int = 0  # readings the aggregates count beyond raw

    @property
    def bad_minutes(self) -> int:
        return len(self.missing_minutes) + len(self.excess_minutes) + len(self.mismatched)

    def violations(self) -> list[str]:
        out = []
        if self.mismatched:
            out.append(f"agg: {len(self.mismatched)} series-minutes differ from the raw recomputation "
                       f"(agg short by {self.missing_readings}, over by {self.excess_readings} readings in all): "
                       + _sample(f"{'|'.join(map(str, k))} [{'; '.join(v)}]" for k, v in self.mismatched.items()))
        if self.missing_minutes:
            out.append(f"agg: {len(self.missing_minutes)} series-minutes of raw readings have no aggregate: "
                       + _sample("|".join(map(str, k)) for k in self.missing_minutes))
        if self.excess_minutes:
            out.append(f"agg: {len(self.excess_minutes)} aggregates have no raw readings: "
                       + _sample("|".join(map(str, k)) for k in self.excess_minutes))
        return out


def _close(a: float, b: float, rel_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0) or a == b


def compare_aggregates(expected: Mapping[SeriesMinute, MinuteAgg], got: Mapping[SeriesMinute, MinuteAgg],
                       rel_tol: float = REL_TOL) -> AggReport:
    rep = AggReport(series_minutes=len(expected))
    for key in sorted(expected.keys() - got.keys()):
        rep.missing_minutes.append(key)
        rep.missing_readings += expected[key].count
    for key in sorted(got.keys() - expected.keys()):
        rep.excess_minutes.append(key)
        rep.excess_readings += got[key].count
    for key in sorted(expected.keys() & got.keys()):
        e, g = expected[key], got[key]
        diffs = []
        if e.count != g.count:
            diffs.append(f"count {e.count} vs {g.count}")
            rep.missing_readings += max(0, e.count - g.count)
            rep.excess_readings += max(0, g.count - e.count)
        if not _close(e.total, g.total, rel_tol):
            diffs.append(f"sum {e.total!r} vs {g.total!r}")
        if e.vmin != g.vmin:
            diffs.append(f"min {e.vmin!r} vs {g.vmin!r}")
        if e.vmax != g.vmax:
            diffs.append(f"max {e.vmax!r} vs {g.vmax!r}")
        if not (g.lasts & e.lasts):  # the stored last must be a value at the latest event time
            diffs.append(f"last {sorted(e.lasts)} vs {sorted(g.lasts)}")
        if diffs:
            rep.mismatched[key] = diffs
    return rep


# --- 3. late readings --------------------------------------------------------------------------------------

AMENDED = "amended"


@dataclass
class LateReport:
    late_rows: int
    deliberately_late: int  # published beyond the allowed lateness
    falsely_late: list[str] = field(default_factory=list)  # counted late, yet on time when published
    not_amended: dict[str, str] = field(default_factory=dict)  # deliberately late, within the horizon: status
    status_checked: bool = True

    def violations(self) -> list[str]:
        out = []
        if self.falsely_late:
            out.append(f"late: {len(self.falsely_late)} readings counted late though on time when published: "
                       f"{_sample(self.falsely_late)}")
        if self.not_amended:
            out.append(f"late: {len(self.not_amended)} readings within the amend horizon not '{AMENDED}': "
                       + _sample(f"{k}={v!r}" for k, v in self.not_amended.items()))
        return out


def check_late(late_rows: Iterable[Row], deliberately_late: Iterable[str], *, has_status: bool) -> LateReport:
    """`late_rows`: `late_readings FINAL` (event_id, and status when the column exists). Every deliberately
    late reading the harness publishes is within the amend horizon (minutes old, the horizon is days)."""
    late_ids = set(deliberately_late)
    rows = list(late_rows)
    rep = LateReport(late_rows=len(rows), deliberately_late=len(late_ids), status_checked=has_status)
    for r in rows:
        eid = str(r["event_id"])
        if eid not in late_ids:
            rep.falsely_late.append(eid)
        elif has_status and r.get("status") != AMENDED:
            rep.not_amended[eid] = str(r.get("status"))
    rep.falsely_late.sort()
    return rep


# --- 4. alert events ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, order=True)
class ExpectedEvent:
    fingerprint: str  # rule|feed|province|dims_key (controlroom.schema.fingerprint)
    seq: int
    event: str  # firing, resolved, …
    state: str


def _events(events: Iterable[ExpectedEvent]) -> str:
    return _sample(f"{e.fingerprint}#{e.seq} {e.event}" for e in events)


@dataclass
class AlertReport:
    expected: int
    stored: int  # distinct (fingerprint, seq) in alert_events
    missing: list[ExpectedEvent] = field(default_factory=list)
    wrong: dict[ExpectedEvent, list[str]] = field(default_factory=dict)  # expected -> events stored instead
    unexpected: list[str] = field(default_factory=list)  # (fingerprint, seq, event) nobody expected
    doubled: list[str] = field(default_factory=list)  # an expected event kind stored more often than expected
    conflicting: list[str] = field(default_factory=list)  # one (alert_id, seq), several different events

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.wrong) + len(self.unexpected) + len(self.conflicting)

    def violations(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"alerts: {len(self.missing)} expected events not in alert_events: {_events(self.missing)}")
        if self.wrong:
            out.append(f"alerts: {len(self.wrong)} events stored with another content: "
                       + _sample(f"{e.fingerprint}#{e.seq} {e.event} → {v}" for e, v in self.wrong.items()))
        if self.doubled:
            out.append(f"alerts: {len(self.doubled)} events stored more than once: {_sample(self.doubled)}")
        if self.unexpected:
            out.append(f"alerts: {len(self.unexpected)} unexpected events: {_sample(self.unexpected)}")
        if self.conflicting:
            out.append(f"alerts: {len(self.conflicting)} (alert, seq) with different events: "
                       f"{_sample(self.conflicting)}")
        return out


def check_alerts(expected: Iterable[ExpectedEvent], rows: Iterable[Row]) -> AlertReport:
    """`rows`: every row of `alert_events` *without* FINAL (fingerprint, seq, event, state), so copies of one
    (alert_id, seq) that disagree show; identical copies are what ReplacingMergeTree merges away."""
    want = sorted(set(expected))
    stored: dict[tuple[str, int], set[tuple[str, str]]] = defaultdict(set)
    for r in rows:
        stored[(str(r["fingerprint"]), int(r["seq"]))].add((str(r["event"]), str(r["state"])))
    rep = AlertReport(expected=len(want), stored=len(stored))
    for key, contents in sorted(stored.items()):
        if len(contents) > 1:
            rep.conflicting.append(f"{key[0]}#{key[1]}: {sorted(contents)}")
    want_keys = {(e.fingerprint, e.seq) for e in want}
    for e in want:
        got = stored.get((e.fingerprint, e.seq))
        if got is None:
            rep.missing.append(e)
        elif (e.event, e.state) not in got:
            rep.wrong[e] = sorted(f"{ev}/{st}" for ev, st in got)
    kinds_expected = Counter((e.fingerprint, e.event) for e in want)
    kinds_stored: Counter[tuple[str, str]] = Counter()
    for (fp, seq), contents in sorted(stored.items()):
        for ev, _st in contents:
            kinds_stored[(fp, ev)] += 1
        if (fp, seq) not in want_keys:
            rep.unexpected.append(f"{fp}#{seq} {'/'.join(sorted(ev for ev, _ in contents))}")
    for (fp, ev), n in sorted(kinds_stored.items()):
        if kinds_expected[(fp, ev)] and n > kinds_expected[(fp, ev)]:
            rep.doubled.append(f"{fp} {ev}×{n} (expected {kinds_expected[(fp, ev)]})")
    return rep


# --- 5. notifications --------------------------------------------------------------------------------------

@dataclass
class NotifyReport:
    expected: int
    requests: int  # events delivered, counted over every webhook request received
    missing: list[ExpectedEvent] = field(default_factory=list)  # never delivered
    multi_key: list[str] = field(default_factory=list)  # one event, several idempotency keys
    redelivered: int = 0  # requests beyond the first per key (allowed: at least once)

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.multi_key)

    def violations(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"notify: {len(self.missing)} expected notifications never delivered: {_events(self.missing)}")
        if self.multi_key:
            out.append(f"notify: {len(self.multi_key)} events delivered under different idempotency keys: "
                       f"{_sample(self.multi_key)}")
        return out


def check_notifications(expected: Iterable[ExpectedEvent], hits: Iterable[tuple[str, Row]]) -> NotifyReport:
    """`hits`: (per-event idempotency key, the event's fingerprint and seq) of every event the received webhook
    requests delivered (a grouped notification delivers several: bench.chaos.events_of)."""
    want = sorted(set(expected))
    keys: dict[tuple[str, int], set[str]] = defaultdict(set)
    per_key: Counter[str] = Counter()
    n = 0
    for key, alert in hits:
        n += 1
        keys[(str(alert["fingerprint"]), int(alert["seq"]))].add(key)
        per_key[key] += 1
    rep = NotifyReport(expected=len(want), requests=n, redelivered=sum(c - 1 for c in per_key.values()))
    rep.missing = [e for e in want if (e.fingerprint, e.seq) not in keys]
    rep.multi_key = [f"{fp}#{seq}: {sorted(ks)}" for (fp, seq), ks in sorted(keys.items()) if len(ks) > 1]
    return rep


# --- post-mortem of missing aggregates ------------------------------------------------------------------------

def explain_missing(missing: Iterable[SeriesMinute], topics: Mapping[str, Sequence[Row]],
                    waiting: Iterable[Row], examples: int = 8) -> dict[str, Any]:
    """For series-minutes with raw readings and no stored aggregate: did the worker emit the window on agg.1m (or an
    amending late reading of it on feeds.late), did the sink still wait for its raw readings when it stopped, and
    what the worker's changelog says of it. `topics`: records per topic ({partition, offset, key, value} as text);
    `waiting`: the sink's waiting triggers ({window: [feed, province, dims_key, window_start, partition], …})."""
    import json

    missing = list(missing)
    want = set(missing)
    emitted: dict[SeriesMinute, list[dict[str, Any]]] = defaultdict(list)
    amended: dict[SeriesMinute, int] = Counter()
    changelog: dict[SeriesMinute, list[str]] = defaultdict(list)
    for topic, recs in topics.items():
        for r in recs:
            if topic == "agg.1m" or topic.endswith("late"):
                try:
                    d = json.loads(r["value"])
                    key = (str(d["feed"]), str(d["province"]), str(d.get("dims_key", "")), int(d["window_start"]))
                except (ValueError, KeyError, TypeError):
                    continue
                if key not in want and topic == "agg.1m":
                    continue
                if topic == "agg.1m":
                    emitted[key].append({"source_partition": d.get("source_partition"),
                                         "max_offset": d.get("max_offset"), "count": d.get("count"),
                                         "at": r["offset"]})
                elif d.get("status") == "amended":
                    dk = ",".join(f"{k}={v}" for k, v in sorted((d.get("dims") or {}).items()))
                    amended[(key[0], key[1], dk, key[3])] += 1
            elif topic.endswith("-changelog") and (r.get("key") or "").startswith("w|"):
                parts = r["key"].split("|")  # w|end|topic|partition|feed|province|dims_key|start
                if len(parts) == 8:
                    key = (parts[4], parts[5], parts[6], int(parts[7]))
                    if key in want:
                        state = "tombstone" if r["value"] is None else f"count={json.loads(r['value'])[0]}"
                        changelog[key].append(f"{r['partition']}@{r['offset']}:{state}")
    waits: dict[SeriesMinute, list[Row]] = defaultdict(list)
    for t in waiting:
        w = t.get("window") or []
        if len(w) >= 4:
            waits[(str(w[0]), str(w[1]), str(w[2]), int(w[3]))].append(t)
    verdicts: Counter[str] = Counter()
    shown: list[dict[str, Any]] = []
    for key in missing:
        if waits.get(key):
            verdict = "emitted, sink still waiting for its raw readings"
        elif emitted.get(key):
            verdict = "emitted on agg.1m, not stored, not waiting"
        elif amended.get(key):
            verdict = "not emitted; amending late readings only"
        elif changelog.get(key) and not changelog[key][-1].endswith("tombstone"):
            verdict = "never emitted: still open in the worker's changelog (not closed yet)"
        elif changelog.get(key):
            verdict = "never emitted: forgotten (tombstoned) by the worker without an agg.1m message"
        else:
            verdict = "never emitted on agg.1m"
        verdicts[verdict] += 1
        if len(shown) < examples:
            shown.append({"series_minute": "|".join(map(str, key)), "verdict": verdict,
                          "agg_1m": emitted.get(key, [])[:4], "amended_late": amended.get(key, 0),
                          "sink_waiting": waits.get(key, [])[:2], "changelog": changelog.get(key, [])[-6:]})
    return {"verdicts": dict(verdicts), "examples": shown}
