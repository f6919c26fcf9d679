"""Backtests on the warehouse: POST /rules/backtest (api/alerts.py) and `controlroom rules backtest`
(api/rules_cli.py) both call `backtest`. The evaluation is controlroom.alerts.backtest (the alerter's own
code); this module reads the rule's current version and the stored windows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from api import alerts_sql
from controlroom.alerts.backtest import DAY_MS, Plan, parse_instant, plan_backtest, run_backtest
from controlroom.alerts.rules import effective_rule_docs
from controlroom.catalog import Catalog
from controlroom.warehouse import Warehouse

# windows read per query: a day of minutes (≤ 100k rows per 68 series), a month of hours, all days at once
CHUNK_MS = {60: DAY_MS, 3600: 31 * DAY_MS, 86_400: 400 * DAY_MS}


def read_windows(wh: Warehouse, plan: Plan) -> Iterator[dict[str, Any]]:
    """The stored windows the plan needs, in window order, one chunk of the range at a time."""
    lo, hi = plan.span
    step = CHUNK_MS[plan.resolution.step_s]
    dims: dict[str, dict[str, str]] = {}  # a few distinct texts: one per series
    for a in range(lo, hi, step):
        for row in wh.query(*alerts_sql.backtest_windows_sql(wh.database, plan.resolution.table, plan.feeds, a,
                                                             min(a + step, hi))):
            text = row.pop("dims_json")
            row["dims"] = dims.get(text) or dims.setdefault(text, orjson.loads(text))
            yield row


def current_rules(wh: Warehouse, base_docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rules in force: the rules file's, overlaid by the API's changes stored in the warehouse."""
    rows = wh.query(*alerts_sql.latest_versions_sql(wh.database, "alert_rules", "rule_id"))
    return effective_rule_docs(base_docs, alerts_sql.stored_rules(rows))


def backtest(wh: Warehouse, catalog: Catalog, rule: Any, from_: Any, to: Any,
             in_force: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The answer of POST /rules/backtest. Raises BacktestError / RuleError naming the field."""
    lo, hi = parse_instant(from_, "from"), parse_instant(to, "to")
    rule_id = rule.get("id") if isinstance(rule, dict) else None
    current = in_force.get(rule_id) if isinstance(rule_id, str) else None
    plan = plan_backtest(rule, current, lo, hi, catalog)
    return run_backtest(plan, read_windows(wh, plan), catalog)
