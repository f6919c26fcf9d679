"""SQL for the alert endpoints, as pure builders returning (sql, params). Values travel as parameters."""

from __future__ import annotations

from typing import Any

import orjson

from api.series_sql import Params
from controlroom.warehouse import check_identifier, table_in

_ALERT_COLUMNS = (
    "alert_id, seq, fingerprint, rule_id, rule_version, rule_type, severity, event, state, feed, province, dims, "
    "summary_vi, summary_en, value, evidence, toUnixTimestamp64Milli(starts_at) AS starts_at_ms, "
    "if(isNull(ends_at), NULL, toUnixTimestamp64Milli(assumeNotNull(ends_at))) AS ends_at_ms, "
    "toUnixTimestamp64Milli(event_at) AS event_at_ms, ack_by, ack_comment, silenced, link, inhibited_by"
)
STATES = ("pending", "firing", "resolved")
SEVERITY_RANK = "indexOf(['info', 'warning', 'critical'], severity)"


def alerts_sql(database: str, *, states: tuple[str, ...], severity: str | None, feed: str | None,
               province: str | None, limit: int) -> tuple[str, Params]:
    """Current alerts, worst and newest first. `states` is validated by the caller."""
    params: Params = {"limit": limit}
    where = [f"state IN ({', '.join(repr(s) for s in states if s in STATES)})"]
    for name, value in (("severity", severity), ("feed", feed), ("province", province)):
        if value is not None:
            where.append(f"{name} = {{{name}:String}}")
            params[name] = value
    db = check_identifier(database)
    sql = (f"SELECT {_ALERT_COLUMNS} FROM {db}.alerts_current FINAL WHERE {' AND '.join(where)} "
           f"ORDER BY {SEVERITY_RANK} DESC, event_at DESC LIMIT {{limit:Int64}}")
    return sql, params


def sources_sql(database: str, alert_ids: list[str]) -> tuple[str, Params]:
    """The current state of the alerts that inhibit others (to say what mutes them)."""
    db = check_identifier(database)
    return (f"SELECT alert_id, rule_id, feed, province, dims_key, state, summary_vi, summary_en "
            f"FROM {db}.alerts_current FINAL WHERE alert_id IN {{ids:Array(String)}}", {"ids": alert_ids})


def alert_sql(database: str, alert_id: str) -> tuple[str, Params]:
    db = check_identifier(database)
    return f"SELECT {_ALERT_COLUMNS} FROM {db}.alerts_current FINAL WHERE alert_id = {{id:String}}", {"id": alert_id}


def public_alerts_sql(database: str, *, rule_ids: list[str], resolved_since_ms: int,
                      limit: int) -> tuple[str, Params]:
    """The alerts of public rules for the CAP feed: firing ones, and those resolved since `resolved_since_ms`
    after firing (their AllClear); an episode that never fired (pending, or resolved from pending) is not
    public. Newest first."""
    db = check_identifier(database)
    sql = (f"SELECT {_ALERT_COLUMNS} FROM {db}.alerts_current FINAL "
           f"WHERE has({{rules:Array(String)}}, rule_id) AND (state = 'firing' OR (state = 'resolved' "
           f"AND ends_at >= fromUnixTimestamp64Milli({{since:Int64}}, 'UTC') AND (alert_id, starts_at) IN "
           f"(SELECT alert_id, starts_at FROM {db}.alert_events WHERE event = 'firing'))) "
           f"ORDER BY event_at DESC LIMIT {{limit:Int64}}")
    return sql, {"rules": rule_ids, "since": resolved_since_ms, "limit": limit}


def history_sql(database: str, alert_id: str) -> tuple[str, Params]:
    db = check_identifier(database)
    return (f"SELECT {_ALERT_COLUMNS} FROM {db}.alert_events FINAL WHERE alert_id = {{id:String}} "
            f"ORDER BY seq", {"id": alert_id})


def histories_sql(database: str, alert_ids: list[str]) -> tuple[str, Params]:
    """The events of several alerts at once (the CAP feed threads each alert's messages)."""
    db = check_identifier(database)
    return (f"SELECT {_ALERT_COLUMNS} FROM {db}.alert_events FINAL WHERE has({{ids:Array(String)}}, alert_id) "
            f"ORDER BY alert_id, seq", {"ids": alert_ids})


def deliveries_sql(database: str, alert_id: str) -> tuple[str, Params]:
    return (f"SELECT seq, event, subscription_id, channel, target, attempt, status, http_status, error, "
            f"toUnixTimestamp64Milli(attempted_at) AS attempted_at_ms, duration_ms "
            f"FROM {table_in(database, 'alert_deliveries')} FINAL WHERE alert_id = {{id:String}} "
            f"ORDER BY attempted_at, seq, attempt", {"id": alert_id})


def latest_versions_sql(database: str, table: str, id_col: str) -> tuple[str, Params]:
    """The newest version of each row of a versioned table (rules, silences, subscriptions)."""
    if table not in ("alert_rules", "silences", "subscriptions"):
        raise ValueError(f"not a versioned table: {table}")
    return f"SELECT * FROM {table_in(database, table)} ORDER BY {id_col}, version DESC LIMIT 1 BY {id_col}", {}


def stored_rules(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows of latest_versions_sql(…, "alert_rules", …) → {rule id: {"version", "doc" | None (deleted)}}, the
    `stored` of controlroom.alerts.rules.effective_rule_docs."""
    return {r["rule_id"]: {"version": int(r["version"]), "doc": None if r["deleted"] else orjson.loads(r["doc"])}
            for r in rows}


_BACKTEST_TABLES = {  # window table → (window start in epoch ms, its time column, the partial's partition)
    "agg_1m": ("toUnixTimestamp64Milli(window_start)", "window_start", "source_partition"),
    "agg_1h": ("toUnixTimestamp(bucket) * 1000", "bucket", "toUInt32(0)"),
    "agg_1d": ("toUnixTimestamp(bucket) * 1000", "bucket", "toUInt32(0)"),
}


def backtest_windows_sql(database: str, table: str, feeds: tuple[str, ...] | None, from_ms: int,
                         to_ms: int) -> tuple[str, Params]:
    """Stored windows of [from, to) of `feeds` (None: all) in window order, as controlroom.alerts.backtest reads
    them: feed, province, dims_json, part, ws_ms, count, sum, min, max, last, last_ts_ms. agg_1m gives
    each partial of a window as its own row (the alerter sees them so); a rollup gives one row per bucket."""
    if table not in _BACKTEST_TABLES:
        raise ValueError(f"not a window table: {table}")
    start_ms, col, partition = _BACKTEST_TABLES[table]
    params: Params = {"from_ms": from_ms, "to_ms": to_ms}
    where = [f"{col} >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC')",
             f"{col} < fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC')"]
    if feeds is not None:
        for i, feed in enumerate(feeds):
            params[f"feed{i}"] = feed
        where.append(f"feed IN ({', '.join(f'{{feed{i}:String}}' for i in range(len(feeds)))})")
    db = check_identifier(database)
    # dims as JSON text: a Map column costs ~45 µs a row to turn into Python dicts, more than the evaluation
    sql = (f"SELECT feed, province, toJSONString(dims) AS dims_json, {partition} AS part, {start_ms} AS ws_ms, "
           f"count, sum, min, max, last, toUnixTimestamp64Milli(last_ts) AS last_ts_ms "
           f"FROM {db}.{table} FINAL WHERE {' AND '.join(where)} ORDER BY {col}, feed, province, dims_key, part")
    return sql, params
