"""`controlroom rules backtest RULE_FILE --from --to`: what POST /rules/backtest answers, as tables (or --json).

On the warehouse directly (the same code as the API: api/backtest.py), or, while a running API owns the embedded
chDB path (make up), through that API with `--api`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
import yaml

from controlroom.errors import ConfigError
from controlroom.settings import Settings


def read_rule_file(path: Path) -> dict[str, Any]:
    """One rule document from a YAML or JSON file (a rules document holding exactly one rule is accepted too)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the rule: {exc}") from exc
    if isinstance(doc, dict) and isinstance(doc.get("rules"), list) and len(doc) == 1:
        if len(doc["rules"]) != 1:
            raise ConfigError(f"{path}: holds {len(doc['rules'])} rules; a backtest takes one")
        doc = doc["rules"][0]
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must hold one rule document (a mapping)")
    return doc


def run_backtest_command(settings: Settings, args: argparse.Namespace) -> int:
    rule = read_rule_file(Path(args.rule_file))
    if args.api:
        from controlroom.api_call import post_to_api

        text = post_to_api(settings, args.api, "/rules/backtest", {"rule": rule, "from": args.from_, "to": args.to},
                           "rules backtest")
        result = orjson.loads(text)
    else:
        result = _on_warehouse(settings, rule, args.from_, args.to)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() if args.json else render(result))
    return 0


def _on_warehouse(settings: Settings, rule: dict[str, Any], from_: str, to: str) -> dict[str, Any]:
    from api.backtest import backtest, current_rules
    from controlroom.alerts.rules import read_rule_docs
    from controlroom.catalog import default_catalog
    from controlroom.warehouse import open_exclusive

    catalog = default_catalog()
    base = read_rule_docs(settings.alert_rules_file, catalog)
    wh = open_exclusive(settings, "run `controlroom rules backtest --api` (it asks the API to do it)")
    try:
        return backtest(wh, catalog, rule, from_, to, current_rules(wh, base))
    finally:
        wh.close()


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    cells = [head] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def _episodes(title: str, episodes: list[dict[str, Any]], total: int) -> list[str]:
    shown = f" (first {len(episodes)})" if len(episodes) < total else ""
    out = ["", f"{title}: {total}{shown}"]
    if episodes:
        out += _table(["started", "fired", "ended", "province", "dims", "peak", "value"],
                      [[e["started"], e["fired"], e["ended"] or "(open)", e["province"],
                        ",".join(f"{k}={v}" for k, v in sorted(e["dims"].items())), e["peak_severity"],
                        f"{e['value']:.4g}" if isinstance(e["value"], int | float) else e["value"]]
                       for e in episodes])
    return out


def render(r: dict[str, Any]) -> str:
    """The answer of POST /rules/backtest as text tables."""
    res, cur = r["resolution"], r["current"]
    lines = [f"rule {r['rule_id']} v{r['rule_version']} ({r['rule_type']}), {r['from']} → {r['to']}",
             f"resolution {res['table']} ({res['step_s']} s windows): {res['why']}; "
             f"{r['windows']:,} windows of {r['series']} series read"]
    lines += [f"note: {n}" for n in r["notes"]]
    columns = [r["alerts"]] + ([cur["alerts"]] if cur else [])
    head = ["alerts", f"proposed v{r['rule_version']}"] + ([f"current v{cur['rule_version']}"] if cur else [])
    rows: list[list[Any]] = [["total", *(c["total"] for c in columns)],
                             ["pending only", *(c["pending_only"] for c in columns)]]
    for part, label in (("per_day", "day"), ("per_province", "province"), ("per_severity", "severity")):
        keys = sorted({k for c in columns for k in c[part]})
        rows += [[f"{label} {k}", *(c[part].get(k, 0) for c in columns)] for k in keys]
    lines += [""] + _table(head, rows)
    lines += _episodes("episodes", r["episodes"], r["alerts"]["total"])
    if cur is None:
        lines += ["", "no current version: a new rule"]
    else:
        d = r["diff"]
        lines += _episodes("only with the proposed version", d["episodes_only_proposed"], d["only_proposed"])
        lines += _episodes("only with the current version", d["episodes_only_current"], d["only_current"])
        lines += [f"in both: {d['in_both']}"]
    return "\n".join(lines)


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    print("usage: controlroom rules backtest RULE_FILE --from FROM --to TO [--json] [--api [URL]]")
    return 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rules")
    p.set_defaults(func=_usage)  # argparse requires a subcommand first: never reached
    rules = p.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)
    b = rules.add_parser("backtest", help="the alerts a rule would have raised on stored history, against its "
                                          "current version")
    b.add_argument("rule_file", metavar="RULE_FILE", help="YAML or JSON file with one rule document")
    b.add_argument("--from", dest="from_", required=True, help="start: epoch seconds or ISO 8601 (UTC when no zone)")
    b.add_argument("--to", required=True, help="end, exclusive (same forms)")
    b.add_argument("--json", action="store_true", help="print the API's JSON answer instead of tables")
    b.add_argument("--api", nargs="?", const="local", default=None,
                   help="ask the running API (needed while `make up` owns the embedded warehouse); optionally its "
                        "URL, default http://API_HOST:API_PORT; key from CONTROLROOM_API_KEY or DATA_DIR/admin.key")
    b.set_defaults(func=run_backtest_command)
