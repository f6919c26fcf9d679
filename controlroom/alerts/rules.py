"""Alert rules as data: parsing and validation. Pure code, no Faust, Kafka or ClickHouse.

A rules document is ``{"rules": [ {...}, ... ]}`` (YAML file or API body). Every error names the
field it is about, e.g. ``rules[3].params.above: must be a number``, so the API can answer 422 with it.
Parsed params are normalised (defaults filled in) so the evaluator never guesses.

Per-series overrides are keyed ``"<province>|<dims_key>"`` (``"01|station=s1"``, ``"01|"`` for a
series without dims); an override is merged over the rule's params and validated like them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from controlroom.catalog import NATIONAL, Catalog, Feed, default_catalog, read_yaml
from controlroom.errors import ControlRoomError
from controlroom.reports import default_forms
from controlroom.schema import SEVERITIES

RULE_TYPES = ("threshold", "rate_of_change", "anomaly", "staleness", "data_quality", "target", "report_deadline",
              "contract")
METRICS = ("avg", "sum", "min", "max", "last", "count")
DIRECTIONS = ("up", "down", "both")
ANY_FEED = "*"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")  # no "|": it separates fingerprint parts

# Names a summary template may use; the evaluator supplies all of them (empty or 0 when not relevant).
TEMPLATE_FIELDS = frozenset({
    "rule_id", "severity", "feed", "feed_vi", "feed_en", "unit", "province", "province_vi", "province_en",
    "dims", "value", "value_text", "metric", "level", "threshold", "op", "baseline", "deviation", "z", "change_pct",
    "reference", "lookback_min", "silent_s", "silent_min", "cadences", "silent_series", "series_total",
    "share_pct", "limit_pct", "period_min", "ratio_pct", "target_pct", "plan", "actual", "behind_pct",
    "form", "form_vi", "form_en", "period", "deadline", "days_left", "days_late",  # report_deadline
    "agency", "agency_vi", "agency_en",  # contract rules: the body whose contract is breached
})

_COMMON_FIELDS = ("id", "version", "type", "feed", "severity", "for_s", "repeat_interval_s", "escalate_after_s",
                  "provinces", "agencies", "dims", "params", "overrides", "summary", "enabled", "description", "public")


def _nobody(_feed: str, _province: str) -> str:
    return ""


class RuleError(ControlRoomError):
    """A rule document is invalid; the message starts with the path of the offending field."""


@dataclass(frozen=True)
class Rule:
    id: str
    version: int
    type: str
    feed: str  # a feed id, or "*" for every feed
    severity: str
    for_s: float = 0.0
    repeat_interval_s: float | None = 3600.0
    escalate_after_s: float | None = None
    provinces: frozenset[str] = frozenset()  # empty = every province
    dims: Mapping[str, str] = field(default_factory=dict)  # a series matches when it has all these
    params: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    summary_vi: str = ""
    summary_en: str = ""
    enabled: bool = True
    description: str = ""
    public: bool = False  # its alerts go on the public CAP feed (GET /cap/feed) with CAP scope Public
    agencies: frozenset[str] = frozenset()  # empty = every agency; else series whose supplier is one of these
    # the registry's supplier of a series (Registry.supplier), set by parse_rule from the catalog
    supplier: Callable[[str, str], str] = field(default=_nobody, compare=False, repr=False)

    def matches(self, feed: str, province: str, dims: Mapping[str, str]) -> bool:
        if self.feed != ANY_FEED and self.feed != feed:
            return False
        if self.provinces and province not in self.provinces:
            return False
        if self.agencies and self.supplier(feed, province) not in self.agencies:
            return False
        return all(dims.get(k) == v for k, v in self.dims.items())

    def params_for(self, province: str, dkey: str) -> Mapping[str, Any]:
        """The params of one series: its override when there is one, else the rule's."""
        return self.overrides.get(f"{province}|{dkey}", self.params)


# --- field checks: each raises RuleError naming `where` ---------------------------------------------

def _number(v: Any, where: str, *, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise RuleError(f"{where}: must be a number")
    x = float(v)
    if x != x or x in (float("inf"), float("-inf")):
        raise RuleError(f"{where}: must be finite")
    if lo is not None and (x <= lo if lo_open else x < lo):
        raise RuleError(f"{where}: must be {'>' if lo_open else '>='} {lo:g}")
    if hi is not None and x > hi:
        raise RuleError(f"{where}: must be <= {hi:g}")
    return x


def _int(v: Any, where: str, *, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise RuleError(f"{where}: must be an integer")
    if v < lo:
        raise RuleError(f"{where}: must be >= {lo}")
    return v


def _choice(v: Any, where: str, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise RuleError(f"{where}: must be one of {', '.join(choices)}")
    return str(v)


def _mapping(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise RuleError(f"{where}: must be a mapping")
    return v


def _no_unknown(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for k in raw:
        if k not in allowed:
            raise RuleError(f"{where}.{k}: unknown field (allowed: {', '.join(allowed)})")


def _dims_filter(v: Any, where: str, feed: Feed | None) -> dict[str, str]:
    raw = _mapping(v, where)
    out: dict[str, str] = {}
    for k, val in raw.items():
        if not isinstance(val, str) or not val:
            raise RuleError(f"{where}.{k}: must be a non-empty string")
        if feed is not None:
            if k not in feed.dims:
                raise RuleError(f"{where}.{k}: feed {feed.id} has no dim {k!r} (dims: {sorted(feed.dims)})")
            if val not in feed.dims[k]:
                raise RuleError(f"{where}.{k}: must be one of {', '.join(feed.dims[k])}")
        out[str(k)] = val
    return out


def _template(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise RuleError(f"{where}: must be a string")
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(v) if name is not None]
    except ValueError as exc:
        raise RuleError(f"{where}: bad template ({exc})") from exc
    for name in names:
        if name not in TEMPLATE_FIELDS:
            raise RuleError(f"{where}: unknown placeholder {{{name}}} (known: {', '.join(sorted(TEMPLATE_FIELDS))})")
    return v


# --- params per rule type ---------------------------------------------------------------------------

ParamCheck = Callable[[dict[str, Any], str, "Rule", Feed | None], dict[str, Any]]


def _threshold_levels(p: dict[str, Any], where: str, severity: str) -> list[dict[str, Any]]:
    given = [k for k in ("above", "below", "levels") if k in p]
    if len(given) != 1:
        raise RuleError(f"{where}: give exactly one of above, below, levels")
    if "levels" not in p:
        op = given[0]
        return [{"name": "", "op": op, "value": _number(p[op], f"{where}.{op}"), "severity": severity}]
    raw = p["levels"]
    if not isinstance(raw, list) or not raw:
        raise RuleError(f"{where}.levels: must be a non-empty list")
    levels = []
    for i, lv in enumerate(raw):
        lw = f"{where}.levels[{i}]"
        lv = _mapping(lv, lw)
        _no_unknown(lv, ("name", "above", "below", "severity"), lw)
        ops = [k for k in ("above", "below") if k in lv]
        if len(ops) != 1:
            raise RuleError(f"{lw}: give exactly one of above, below")
        name = lv.get("name", str(i + 1))
        if not isinstance(name, str):
            raise RuleError(f"{lw}.name: must be a string")
        levels.append({"name": name, "op": ops[0], "value": _number(lv[ops[0]], f"{lw}.{ops[0]}"),
                       "severity": _choice(lv.get("severity", severity), f"{lw}.severity", SEVERITIES)})
    if len({lv["op"] for lv in levels}) != 1:
        raise RuleError(f"{where}.levels: all levels must use the same direction (above or below)")
    return levels


def _p_threshold(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    _no_unknown(p, ("metric", "above", "below", "levels"), where)
    return {"metric": _choice(p.get("metric", "avg"), f"{where}.metric", METRICS),
            "levels": _threshold_levels(p, where, rule.severity)}


def _p_rate(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    _no_unknown(p, ("metric", "lookback_s", "pct", "direction", "mode", "min_base"), where)
    if "pct" not in p:
        raise RuleError(f"{where}.pct: is required")
    return {"metric": _choice(p.get("metric", "last"), f"{where}.metric", METRICS),
            "lookback_s": _number(p.get("lookback_s", 900), f"{where}.lookback_s", lo=60),
            "pct": _number(p["pct"], f"{where}.pct", lo=0, lo_open=True),
            "direction": _choice(p.get("direction", "both"), f"{where}.direction", DIRECTIONS),
            # extreme: now vs the lowest (highest) window within the lookback — prices;
            # period: total of the last lookback vs the lookback before it — sparse counts
            "mode": _choice(p.get("mode", "extreme"), f"{where}.mode", ("extreme", "period")),
            "min_base": _number(p.get("min_base", 0), f"{where}.min_base", lo=0)}


def _p_anomaly(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    _no_unknown(p, ("metric", "k", "min_samples", "alpha", "direction", "min_sd", "tz_offset_h", "seasonal"), where)
    return {"metric": _choice(p.get("metric", "sum"), f"{where}.metric", METRICS),
            "k": _number(p.get("k", 4.0), f"{where}.k", lo=0, lo_open=True),
            "min_samples": _int(p.get("min_samples", 30), f"{where}.min_samples", lo=2),
            "alpha": _number(p.get("alpha", 0.05), f"{where}.alpha", lo=0, hi=1, lo_open=True),
            "direction": _choice(p.get("direction", "up"), f"{where}.direction", DIRECTIONS),
            "min_sd": _number(p.get("min_sd", 1.0), f"{where}.min_sd", lo=0),
            "tz_offset_h": _number(p.get("tz_offset_h", 7), f"{where}.tz_offset_h", lo=-14, hi=14),
            "seasonal": _choice(p.get("seasonal", "hour_of_day"), f"{where}.seasonal", ("hour_of_day", "none"))}


def _p_staleness(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    _no_unknown(p, ("cadences", "min_silence_s", "scope", "min_silent_pct", "min_series"), where)
    scope = _choice(p.get("scope", "series"), f"{where}.scope", ("series", "feed"))
    if scope == "series":
        for name in ("min_silent_pct", "min_series"):
            if name in p:
                raise RuleError(f"{where}.{name}: only for scope feed")
    return {"cadences": _number(p.get("cadences", 3), f"{where}.cadences", lo=0, lo_open=True),
            # we learn of a reading only when its 1-minute window closes (+ lateness), so a silence
            # shorter than that is normal even for a 10 s feed
            "min_silence_s": _number(p.get("min_silence_s", 150), f"{where}.min_silence_s", lo=0),
            # scope feed: one alert per feed (province ""), when more than min_silent_pct of its series are silent
            "scope": scope,
            "min_silent_pct": _number(p.get("min_silent_pct", 50), f"{where}.min_silent_pct", lo=0, hi=100),
            "min_series": _int(p.get("min_series", 2), f"{where}.min_series", lo=1)}


def _p_quality(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    _no_unknown(p, ("limit_pct", "period_s", "min_total", "count"), where)
    return {"limit_pct": _number(p.get("limit_pct", 1.0), f"{where}.limit_pct", lo=0, hi=100),
            "period_s": _number(p.get("period_s", 300), f"{where}.period_s", lo=60),
            "min_total": _int(p.get("min_total", 20), f"{where}.min_total"),
            "count": _choice(p.get("count", "both"), f"{where}.count", ("rejected", "late", "both"))}


def _p_target(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    kind = _choice(p.get("kind"), f"{where}.kind", ("ratio", "plan"))
    if kind == "ratio":
        _no_unknown(p, ("kind", "numerator", "denominator", "by", "period_s", "below_pct", "min_denominator",
                        "metric"), where)
        if "numerator" not in p:
            raise RuleError(f"{where}.numerator: is required (a dims filter, e.g. {{on_time: 'true'}})")
        if "below_pct" not in p:
            raise RuleError(f"{where}.below_pct: is required")
        by = p.get("by", [])
        if not isinstance(by, list) or not all(isinstance(b, str) for b in by):
            raise RuleError(f"{where}.by: must be a list of dim names")
        for i, b in enumerate(by):
            if feed is not None and b not in feed.dims:
                raise RuleError(f"{where}.by[{i}]: feed {feed.id} has no dim {b!r}")
        return {"kind": kind, "numerator": _dims_filter(p["numerator"], f"{where}.numerator", feed),
                "denominator": _dims_filter(p.get("denominator", {}), f"{where}.denominator", feed),
                "by": sorted(by), "period_s": _number(p.get("period_s", 3600), f"{where}.period_s", lo=60),
                "below_pct": _number(p["below_pct"], f"{where}.below_pct", lo=0, hi=100),
                "min_denominator": _number(p.get("min_denominator", 20), f"{where}.min_denominator", lo=0),
                "metric": _choice(p.get("metric", "sum"), f"{where}.metric", METRICS)}
    _no_unknown(p, ("kind", "yearly_target", "tolerance_pct", "tz_offset_h", "metric"), where)
    if "yearly_target" not in p:
        raise RuleError(f"{where}.yearly_target: is required")
    return {"kind": kind, "yearly_target": _number(p["yearly_target"], f"{where}.yearly_target", lo=0, lo_open=True),
            "tolerance_pct": _number(p.get("tolerance_pct", 10), f"{where}.tolerance_pct", lo=0, hi=100),
            "tz_offset_h": _number(p.get("tz_offset_h", 7), f"{where}.tz_offset_h", lo=-14, hi=14),
            "metric": _choice(p.get("metric", "sum"), f"{where}.metric", METRICS)}


def _p_report(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    """report_deadline (controlroom/alerts/deadlines.py): `feed` is a report form's code, or "*" for every form."""
    stage = _choice(p.get("stage"), f"{where}.stage", ("reminder", "overdue"))
    if stage == "reminder":
        _no_unknown(p, ("stage", "days_before"), where)
        return {"stage": stage, "days_before": _number(p.get("days_before", 3), f"{where}.days_before", lo=0,
                                                       hi=366, lo_open=True)}
    _no_unknown(p, ("stage", "grace_s", "judge_for_days"), where)
    return {"stage": stage, "grace_s": _number(p.get("grace_s", 0), f"{where}.grace_s", lo=0, hi=366 * 86_400),
            "judge_for_days": _number(p.get("judge_for_days", 31), f"{where}.judge_for_days", lo=0, hi=366,
                                      lo_open=True)}


def _report_rule_fields(raw: dict[str, Any], where: str) -> None:
    """A report_deadline rule names a form (or "*") as its feed; it has no series, so no dims, overrides or
    agencies (a unit's agency is its reporter: filter units with `provinces`)."""
    if raw["feed"] != ANY_FEED and raw["feed"] not in default_forms():
        raise RuleError(f"{where}.feed: unknown report form {raw['feed']!r} (a code from reports.yaml, or '*')")
    for name in ("dims", "overrides", "agencies"):
        if raw.get(name):
            raise RuleError(f"{where}.{name}: not for a report_deadline rule")


def _p_contract(p: dict[str, Any], where: str, rule: Rule, feed: Feed | None) -> dict[str, Any]:
    """A feed contract (agencies.yaml) breached: fewer than min_completeness_pct of its series reporting, a series
    reporting while its last reading is within max(cadences × the contract's cadence, min_silence_s)."""
    _no_unknown(p, ("min_completeness_pct", "cadences", "min_silence_s"), where)
    return {"min_completeness_pct": _number(p.get("min_completeness_pct", 90), f"{where}.min_completeness_pct",
                                            lo=0, hi=100, lo_open=True),
            "cadences": _number(p.get("cadences", 3), f"{where}.cadences", lo=0, lo_open=True),
            "min_silence_s": _number(p.get("min_silence_s", 150), f"{where}.min_silence_s", lo=0)}


_PARAMS: dict[str, ParamCheck] = {
    "threshold": _p_threshold, "rate_of_change": _p_rate, "anomaly": _p_anomaly,
    "staleness": _p_staleness, "data_quality": _p_quality, "target": _p_target, "report_deadline": _p_report,
    "contract": _p_contract,
}
_NEEDS_FEED = ("target",)  # a ratio names dims, a plan is about one feed: "*" makes no sense


def _merge_override(base: dict[str, Any], over: dict[str, Any], rtype: str) -> dict[str, Any]:
    merged = dict(base)
    if rtype == "threshold" and any(k in over for k in ("above", "below", "levels")):
        for k in ("above", "below", "levels"):  # an override's alarm levels replace the rule's
            merged.pop(k, None)
    merged.update(over)
    return merged


def parse_rule(raw: Any, where: str, catalog: Catalog) -> Rule:
    raw = _mapping(raw, where)
    _no_unknown(raw, _COMMON_FIELDS, where)
    for name in ("id", "version", "type", "feed", "severity"):
        if name not in raw:
            raise RuleError(f"{where}.{name}: is required")
    rid = raw["id"]
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise RuleError(f"{where}.id: must be 1-80 chars of a-z, 0-9, '_', '.', '-' starting with a letter or digit")
    version = _int(raw["version"], f"{where}.version", lo=1)
    rtype = _choice(raw["type"], f"{where}.type", RULE_TYPES)
    feed_id = raw["feed"]
    feed: Feed | None = None
    if rtype == "report_deadline":
        _report_rule_fields(raw, where)
    elif feed_id == ANY_FEED:
        if rtype in _NEEDS_FEED:
            raise RuleError(f"{where}.feed: a {rtype} rule needs one feed, not '*'")
    elif not isinstance(feed_id, str) or feed_id not in catalog.feeds:
        raise RuleError(f"{where}.feed: unknown feed {feed_id!r}")
    else:
        feed = catalog.feeds[feed_id]
    severity = _choice(raw["severity"], f"{where}.severity", SEVERITIES)
    for_s = _number(raw.get("for_s", 0), f"{where}.for_s", lo=0)
    rep = raw.get("repeat_interval_s", 3600)
    repeat = None if rep is None else _number(rep, f"{where}.repeat_interval_s", lo=0, lo_open=True)
    esc = raw.get("escalate_after_s")
    escalate = None if esc is None else _number(esc, f"{where}.escalate_after_s", lo=0)
    provs = raw.get("provinces") or []
    if not isinstance(provs, list):
        raise RuleError(f"{where}.provinces: must be a list of province codes")
    for i, code in enumerate(provs):
        if code != NATIONAL and code not in catalog.provinces:
            raise RuleError(f"{where}.provinces[{i}]: unknown province code {code!r}")
    agencies = raw.get("agencies") or []
    if not isinstance(agencies, list):
        raise RuleError(f"{where}.agencies: must be a list of agency ids (controlroom/data/agencies.yaml)")
    for i, agency in enumerate(agencies):
        if agency not in catalog.registry.bodies:
            raise RuleError(f"{where}.agencies[{i}]: unknown agency {agency!r}")
    dims = _dims_filter(raw.get("dims") or {}, f"{where}.dims", feed)
    summary = _mapping(raw.get("summary") or {}, f"{where}.summary")
    _no_unknown(summary, ("vi", "en"), f"{where}.summary")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RuleError(f"{where}.enabled: must be true or false")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise RuleError(f"{where}.description: must be a string")
    public = raw.get("public", False)
    if not isinstance(public, bool):
        raise RuleError(f"{where}.public: must be true or false (true: its alerts are published on the public "
                        f"CAP feed), not {public!r}")
    rule = Rule(id=rid, version=version, type=rtype, feed=str(feed_id), severity=severity, for_s=for_s,
                repeat_interval_s=repeat, escalate_after_s=escalate, provinces=frozenset(provs), dims=dims,
                summary_vi=_template(summary.get("vi", ""), f"{where}.summary.vi"),
                summary_en=_template(summary.get("en", ""), f"{where}.summary.en"),
                enabled=enabled, description=description, public=public, agencies=frozenset(agencies),
                supplier=catalog.registry.supplier)
    check = _PARAMS[rtype]
    raw_params = _mapping(raw.get("params") or {}, f"{where}.params")
    params = check(raw_params, f"{where}.params", rule, feed)
    overrides: dict[str, dict[str, Any]] = {}
    for key, over in _mapping(raw.get("overrides") or {}, f"{where}.overrides").items():
        ow = f"{where}.overrides[{key!r}]"
        province, sep, dkey = str(key).partition("|")
        if not sep or (province != NATIONAL and province not in catalog.provinces):
            raise RuleError(f"{ow}: key must be '<province code>|<dims key>', e.g. '01|station=s1'")
        if feed is not None and dkey:
            names = [part.partition("=")[0] for part in dkey.split(",")]
            for n in names:
                if n not in feed.dims:
                    raise RuleError(f"{ow}: feed {feed.id} has no dim {n!r}")
        overrides[f"{province}|{dkey}"] = check(_merge_override(raw_params, _mapping(over, ow), rtype), ow, rule,
                                                feed)
    return Rule(id=rule.id, version=rule.version, type=rule.type, feed=rule.feed, severity=rule.severity,
                for_s=rule.for_s, repeat_interval_s=rule.repeat_interval_s, escalate_after_s=rule.escalate_after_s,
                provinces=rule.provinces, dims=rule.dims, params=params, overrides=overrides,
                summary_vi=rule.summary_vi, summary_en=rule.summary_en, enabled=rule.enabled,
                description=rule.description, public=rule.public, agencies=rule.agencies, supplier=rule.supplier)


def parse_rules(doc: Any, catalog: Catalog | None = None) -> list[Rule]:
    """Validate a rules document against the catalog; raises RuleError naming the first bad field."""
    catalog = catalog or default_catalog()
    doc = _mapping(doc, "document")
    _no_unknown(doc, ("rules",), "document")
    raw = doc.get("rules")
    if not isinstance(raw, list):
        raise RuleError("rules: must be a list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        rule = parse_rule(item, f"rules[{i}]", catalog)
        if rule.id in seen:
            raise RuleError(f"rules[{i}].id: {rule.id!r} is defined twice")
        seen.add(rule.id)
        rules.append(rule)
    return rules


def _rules_file() -> Path:
    return Path(str(resources.files("controlroom") / "data" / "rules.yaml"))


def read_rule_docs(path: Path | None, catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """The rule documents of a YAML file (None: the shipped one), as written, after validating them all."""
    doc = read_yaml(path or _rules_file(), "rules.yaml", "rules", RuleError)
    parse_rules(doc, catalog or default_catalog())
    return list(doc["rules"])


def load_rules(path: Path, catalog: Catalog) -> list[Rule]:
    return parse_rules({"rules": read_rule_docs(path, catalog)}, catalog)


def load_default_rules(catalog: Catalog | None = None) -> list[Rule]:
    """The rules shipped with the project (controlroom/data/rules.yaml)."""
    return load_rules(_rules_file(), catalog or default_catalog())


def public_rule_ids(docs: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """The rules in force (as effective_rule_docs returns them) that publish their alerts (`public: true`)."""
    return frozenset(rid for rid, doc in docs.items() if doc.get("public") is True)


def effective_rule_docs(base: list[dict[str, Any]],
                        stored: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rules in force: the file's, overlaid by those changed through the API. `stored` maps a rule id to
    {"version": n, "doc": doc or None (deleted)}; for one id the higher version wins, a tie goes to the
    API (the latest human decision)."""
    out = {str(d["id"]): dict(d) for d in base}
    for rid, entry in stored.items():
        if rid in out and int(out[rid]["version"]) > int(entry["version"]):
            continue
        if entry["doc"] is None:
            out.pop(rid, None)
        else:
            out[rid] = dict(entry["doc"])
    return out
