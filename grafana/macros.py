"""Expand a panel's SQL the way Grafana and its ClickHouse plugin (grafana-clickhouse-datasource) do (pure).

Read from the plugin's source (github.com/grafana/clickhouse-datasource, src/data/CHDatasource.ts and
pkg/macros/macros.go), in the order the plugin applies them:

1. front end, `applyConditionalAll`: `$__conditionalAll(cond, $var)` becomes `1=1` when the variable's
   current value is empty or All (`$__all`), else `cond`;
2. front end, Grafana's template service with the plugin's formatter: a multi-value (or All) variable becomes
   `'a','b'` (values joined, no escaping), a single value is inserted as is (the query quotes it:
   `'${feed}'`); All without a custom all value means every option;
3. back end (Go, macropro), innermost macro first, comments stripped:
   `$__timeFilter(c)` → `c >= toDateTime(from_s) AND c <= toDateTime(to_s)`;
   `$__timeFilter_ms(c)` → the same with `fromUnixTimestamp64Milli(ms)`;
   `$__fromTime` / `$__toTime` → `toDateTime(s)`; `$__fromTime_ms` / `$__toTime_ms` →
   `fromUnixTimestamp64Milli(ms)`; `$__dateFilter(c)` → `c >= toDate('YYYY-MM-DD') AND c <= toDate(…)`;
   `$__timeInterval(c)` → `toStartOfInterval(toDateTime(c), INTERVAL n second)` (n = interval, at least 1);
   `$__timeInterval_ms(c)` → `toStartOfInterval(toDateTime64(c, 3), INTERVAL n millisecond)`;
   `$__interval_s` → n; `$__timeFrom(c)` → `c >= toDateTime(s)`; `$__timeTo(c)` → `c <= toDateTime(s)`.
   An unknown macro is left as it is (ClickHouse then refuses the query, as it would in Grafana).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

ALL = "$__all"


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard variable's current value (a string, or a list for multi-value) and its options (for All)."""

    value: str | Sequence[str]
    options: Sequence[str] = ()
    all_value: str | None = None  # a custom "all value" is inserted raw, as Grafana does

    def is_all(self) -> bool:
        v = self.value
        return v == ALL or (not isinstance(v, str) and list(v) == [ALL])

    def is_empty_or_all(self) -> bool:
        """The plugin's test: `current.value.toString()` is '' or '$__all'."""
        text = self.value if isinstance(self.value, str) else ",".join(self.value)
        return text in ("", ALL)


@dataclass(frozen=True, slots=True)
class QueryContext:
    from_ms: int
    to_ms: int
    interval_ms: int
    variables: Mapping[str, Variable] = field(default_factory=dict)


# --- 1. $__conditionalAll (front end) ----------------------------------------------------------------

def _macro_args(text: str, open_paren: int) -> tuple[list[str], int]:
    """Arguments of the call whose '(' is at `open_paren` (commas at depth 0, quotes respected), end index."""
    args, depth, start, i, quote = [], 0, open_paren + 1, open_paren, ""
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(text[start:i])
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(text[start:i])
            start = i + 1
        i += 1
    raise ValueError(f"unbalanced parentheses in macro call: {text[open_paren:open_paren + 60]!r}")


_VAR_NAME = re.compile(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+")


def conditional_all(sql: str, variables: Mapping[str, Variable]) -> str:
    macro = "$__conditionalAll("
    idx = sql.rfind(macro)
    while idx != -1:
        args, end = _macro_args(sql, idx + len(macro) - 1)
        if len(args) != 2:
            return sql
        phrase = args[0]
        m = _VAR_NAME.search(args[1].strip())
        if m:
            var = variables.get(m.group(0))
            if var is not None and var.is_empty_or_all():
                phrase = "1=1"
        sql = sql[:idx] + phrase + sql[end:]
        idx = sql.rfind(macro)
    return sql


# --- 2. template variables (Grafana's template service with the plugin's formatter) --------------------

_TEMPLATE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)\]\]")


def _format(value: str | Sequence[str]) -> str:
    if isinstance(value, str):
        return value
    return "'" + "','".join(value) + "'"


def template_variables(sql: str, variables: Mapping[str, Variable]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        var = variables.get(name)
        if var is None:
            return m.group(0)  # not a dashboard variable (e.g. $__timeFilter): left for the back end
        if var.is_all():
            if var.all_value is not None:
                return var.all_value
            return _format(list(var.options))
        return _format(var.value)

    return _TEMPLATE.sub(sub, sql)


# --- 3. back-end macros ------------------------------------------------------------------------------

def _dt(ms: int) -> str:
    return f"toDateTime({ms // 1000})"


def _dt64(ms: int) -> str:
    return f"fromUnixTimestamp64Milli({ms})"


def _date(ms: int) -> str:
    return f"toDate('{datetime.fromtimestamp(ms / 1000, UTC).strftime('%Y-%m-%d')}')"


def _interval_s(ctx: QueryContext) -> int:
    return int(max(ctx.interval_ms / 1000, 1))


def _one(name: str, fn: Callable[[QueryContext, str], str]) -> Callable[[QueryContext, list[str]], str]:
    def call(ctx: QueryContext, args: list[str]) -> str:
        if len(args) != 1:
            raise ValueError(f"$__{name} expected 1 argument(s), received {len(args)}")
        return fn(ctx, args[0])
    return call


MACROS: dict[str, Callable[[QueryContext, list[str]], str]] = {
    "timeFilter": _one("timeFilter", lambda c, col: f"{col} >= {_dt(c.from_ms)} AND {col} <= {_dt(c.to_ms)}"),
    "timeFilter_ms": _one("timeFilter_ms",
                          lambda c, col: f"{col} >= {_dt64(c.from_ms)} AND {col} <= {_dt64(c.to_ms)}"),
    "dateFilter": _one("dateFilter", lambda c, col: f"{col} >= {_date(c.from_ms)} AND {col} <= {_date(c.to_ms)}"),
    "timeFrom": _one("timeFrom", lambda c, col: f"{col} >= {_dt(c.from_ms)}"),
    "timeTo": _one("timeTo", lambda c, col: f"{col} <= {_dt(c.to_ms)}"),
    "timeInterval": _one("timeInterval", lambda c, col:
                         f"toStartOfInterval(toDateTime({col}), INTERVAL {_interval_s(c)} second)"),
    "timeInterval_ms": _one("timeInterval_ms", lambda c, col:
                            f"toStartOfInterval(toDateTime64({col}, 3), INTERVAL {max(c.interval_ms, 1)} millisecond)"),
    "fromTime": lambda c, _a: _dt(c.from_ms),
    "toTime": lambda c, _a: _dt(c.to_ms),
    "fromTime_ms": lambda c, _a: _dt64(c.from_ms),
    "toTime_ms": lambda c, _a: _dt64(c.to_ms),
    "interval_s": lambda c, _a: str(_interval_s(c)),
}

_MACRO = re.compile(r"\$__(\w+)")


def strip_comments(sql: str) -> str:
    """Drop `-- …` and `/* … */` outside string literals and quoted identifiers, as macropro does."""
    out, i, quote = [], 0, ""
    while i < len(sql):
        ch = sql[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(sql):
                out.append(sql[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
            out.append(ch)
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = len(sql) if j == -1 else j
            continue
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = len(sql) if j == -1 else j + 2
            continue
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def backend_macros(sql: str, ctx: QueryContext) -> str:
    out, pos = [], 0
    for m in _MACRO.finditer(sql):
        if m.start() < pos:
            continue  # inside a call already expanded
        fn = MACROS.get(m.group(1))
        if fn is None:
            continue
        out.append(sql[pos:m.start()])
        end = m.end()
        args: list[str] = []
        if end < len(sql) and sql[end] == "(":
            raw, end = _macro_args(sql, end)
            args = [backend_macros(a, ctx).strip() for a in raw if a.strip() or len(raw) > 1]
        out.append(fn(ctx, args))
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def expand(sql: str, ctx: QueryContext) -> str:
    """The SQL ClickHouse receives from Grafana for this panel query, time range, interval and variables."""
    sql = conditional_all(sql, ctx.variables)
    sql = template_variables(sql, ctx.variables)
    return backend_macros(strip_comments(sql), ctx)
