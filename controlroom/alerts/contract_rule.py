"""Rule type `contract`: a body's feed contract (controlroom/data/agencies.yaml, controlroom/contracts.py) breached.
Pure code, judged by the rule engine's clock like staleness, so it goes through the one alert lifecycle.

Per contract that a rule matches (its feed, or "*"; its `agencies`; its `provinces`, any of the contract's): the
share of the contract's series reporting now, a series reporting while its last reading is within
max(cadences × the contract's cadence, min_silence_s). Below `min_completeness_pct` the contract is breached. Series
are judged as staleness judges them (RuleEngine._silence): after a (re)start, none before a cadence and the lateness
allowance, and silence is counted from the restart, not held against the body.

The alert is the contract's: feed = the contract's feed, province = a provincial center's province ('' for a central
body), dims = {"agency": body id}, so each body's contract has its own fingerprint and the label `agency`
(Registry.supplier_of_alert) names the body. Only transitions are emitted (the clock runs every second).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from controlroom.alerts.evaluate import Condition
    from controlroom.alerts.rules import Rule
    from controlroom.catalog import Catalog
    from controlroom.contracts import Contract

SILENT_EXAMPLES = 10  # silent series a contract alert names in its evidence


@functools.cache
def series_keys(c: Contract) -> tuple[str, ...]:
    """The engine's keys of a contract's series (computed once: the clock asks every second)."""
    from controlroom.schema import series_key  # schema imports the catalog: no cycle at import

    return tuple(series_key(c.feed, province, dkey) for province, dkey in c.series)


def contract_applies(rule: Rule, c: Contract) -> bool:
    if rule.feed not in ("*", c.feed) or (rule.agencies and c.agency not in rule.agencies):
        return False
    return not rule.provinces or any(p in rule.provinces for p in c.provinces)


class ContractJudge:
    """Mixed into RuleEngine: it supplies the attributes and helpers declared here."""

    if TYPE_CHECKING:
        catalog: Catalog
        rules: dict[str, Rule]
        active: dict[str, str]
        last_seen: dict[str, list[Any]]

        def _silence(self, fp: str, last: int | None, p: Mapping[str, Any], cadence_s: float,
                     now_ms: int) -> tuple[bool | None, int, int, float]: ...

        def _evidence(self, rule: Rule, extra: dict[str, Any]) -> dict[str, Any]: ...

        def _emit(self, rule: Rule, feed: str, province: str, dims: dict[str, str], active: bool,
                  value: float | None, evidence: dict[str, Any], at: int, severity: str,
                  ctx: Mapping[str, Any]) -> Condition | None: ...

    def judge_contracts(self, now_ms: int) -> list[Condition]:
        from controlroom.schema import fingerprint  # schema imports the catalog: no cycle at import

        out: list[Condition] = []
        rules = [r for r in self.rules.values() if r.type == "contract"]
        for rule in rules:
            p = rule.params
            for c in self.catalog.contracts.values():
                if not contract_applies(rule, c):
                    continue
                judged = silent = 0
                examples: list[str] = []
                for key in series_keys(c):
                    seen = self.last_seen.get(key)
                    verdict = self._silence("", seen[0] if seen else None, p, c.cadence_s, now_ms)[0]
                    if verdict is None:
                        continue
                    judged += 1
                    if verdict:
                        silent += 1
                        if len(examples) < SILENT_EXAMPLES:
                            examples.append(key)
                if not judged:
                    continue  # nothing judged yet (just after a restart): no verdict
                body = self.catalog.registry.bodies[c.agency]
                dims = {"agency": c.agency}
                share = 100.0 * (judged - silent) / judged
                active = share < p["min_completeness_pct"]
                if active == (fingerprint(rule.id, c.feed, body.province, f"agency={c.agency}") in self.active):
                    continue
                ev = self._evidence(rule, {
                    "method": f"share of the contract's series reporting (last reading within max({p['cadences']:g} "
                              f"cadences x {c.cadence_s:g} s, {p['min_silence_s']:g} s)) below "
                              f"{p['min_completeness_pct']:g} %",
                    "contract": {"agency": c.agency, "feed": c.feed, "series": len(c.series),
                                 "cadence_s": c.cadence_s, "readings_per_hour": [c.per_hour_min, c.per_hour_max],
                                 "timeliness_pct": c.timeliness_pct},
                    "series_judged": judged, "series_silent": silent, "completeness_pct": share,
                    "limit_pct": p["min_completeness_pct"], "silent_examples": examples})
                ctx = {"share_pct": share, "limit_pct": p["min_completeness_pct"], "silent_series": silent,
                       "series_total": judged, "value": share, "agency": c.agency, "agency_vi": body.name_vi,
                       "agency_en": body.name_en, "cadences": p["cadences"]}
                cond = self._emit(rule, c.feed, body.province, dims, active, share, ev, now_ms, rule.severity, ctx)
                if cond is not None:
                    out.append(cond)
        return out
