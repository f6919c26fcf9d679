"""SQL that derives an indicator from the hourly aggregates, as a pure builder returning (sql, params).

One shape for every derived indicator: the feed's hourly rollup (agg_1h, FINAL) grouped by Vietnamese calendar
month (and province); controlroom.indicators folds months into quarters and years. Hours are whole in UTC+7, so
a month is exactly its hours. Values travel as `{name:Type}` parameters; only the checked database name is
spliced in.
"""

from __future__ import annotations

from typing import Any

from api.versions_sql import versions_sql
from controlroom.indicators import Indicator
from controlroom.warehouse import check_identifier


def indicator_months_sql(database: str, ind: Indicator, province: str | None, from_ms: int, to_ms: int,
                         by_province: bool = False) -> tuple[str, dict[str, Any]]:
    """Per Vietnamese month in [from_ms, to_ms): readings' total, count and the last reading, for one province
    or (province None) all of them together, or (by_province) for each province apart (column `prov`)."""
    db = check_identifier(database)
    params: dict[str, Any] = {"feed": ind.feed, "lo": from_ms, "hi": to_ms}
    where = ["feed = {feed:String}", "bucket >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC')",
             "bucket < fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"]
    for n, (key, value) in enumerate(sorted(ind.dims.items())):
        where.append(f"dims[{{k{n}:String}}] = {{v{n}:String}}")
        params[f"k{n}"], params[f"v{n}"] = key, value
    if province is not None:
        where.append("province = {province:String}")
        params["province"] = province
    prov, keys = ("province AS prov, ", "prov, ym") if by_province else ("", "ym")
    sql = (f"SELECT {prov}toYYYYMM(bucket, 'Asia/Ho_Chi_Minh') AS ym, sum(sum) AS total, sum(count) AS n, "
           f"argMax(last, last_ts) AS last_value, toUnixTimestamp64Milli(max(last_ts)) AS last_at "
           f"FROM {db}.agg_1h_final WHERE {' AND '.join(where)} GROUP BY {keys} ORDER BY {keys}")
    return sql, params


def targets_sql(database: str, indicator: str, year: int, province: str | None,
                history: bool = False) -> tuple[str, dict[str, Any]]:
    """The targets of an indicator for a year: the current one per province (highest version, then latest), or
    (history) every version, newest first; one province or all."""
    return versions_sql(database, "indicator_targets",
                        "province AS prov, version, value, set_by, toUnixTimestamp64Milli(set_at) AS set_at_ms, note",
                        {"indicator": ("String", indicator), "year": ("UInt16", year),
                         "province": ("String", province)},
                        "prov", "version DESC, set_at_ms DESC", history)


def next_target_version_sql(database: str, indicator: str, year: int, province: str) -> tuple[str, dict[str, Any]]:
    db = check_identifier(database)
    return (f"SELECT max(version) + 1 AS v FROM {db}.indicator_targets WHERE indicator = {{indicator:String}} "
            "AND year = {year:UInt16} AND province = {province:String}"), {"indicator": indicator, "year": year,
                                                                              "province": province}


def reported_sql(database: str, ind: Indicator, unit: str | None, periods: list[str]) -> tuple[str, dict[str, Any]]:
    """A reported indicator's figure in every submitted revision of its form (drafts never count), newest first per
    unit and period, for one unit, or (unit None) for every unit."""
    db = check_identifier(database)
    params: dict[str, Any] = {"form": ind.report, "field": ind.id}
    where = ["form = {form:String}", "status = 'submitted'", "mapContains(values, {field:String})"]
    where.append("period IN (" + ", ".join(f"{{p{n}:String}}" for n in range(len(periods))) + ")")
    params.update({f"p{n}": label for n, label in enumerate(periods)})
    if unit is not None:
        where.append("unit = {unit:String}")
        params["unit"] = unit
    return (f"SELECT unit AS prov, period AS label, revision, values[{{field:String}}] AS v "
            f"FROM {db}.report_submissions FINAL WHERE {' AND '.join(where)} "
            "ORDER BY prov, label, revision DESC"), params
