"""SQL that derives an indicator from the hourly aggregates, as a pure builder returning (sql, params).

One shape for every derived indicator: the feed's hourly rollup (agg_1h, FINAL) grouped by Vietnamese calendar
month (and province); controlroom.indicators folds months into quarters and years. Hours are whole in UTC+7, so
a month is exactly its hours. Values travel as `{name:Type}` parameters; only the checked database name is
spliced in.
"""

from __future__ import annotations

from typing import Any

from controlroom.indicators import Indicator
from controlroom.warehouse import check_identifier


def indicator_months_sql(database: str, ind: Indicator, province: str | None, from_ms: int,
                         to_ms: int) -> tuple[str, dict[str, Any]]:
    """Per Vietnamese month in [from_ms, to_ms): readings' total, count and the last reading, for one province
    or (province None) all of them together."""
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
    sql = (f"SELECT toYYYYMM(bucket, 'Asia/Ho_Chi_Minh') AS ym, sum(sum) AS total, sum(count) AS n, "
           f"argMax(last, last_ts) AS last_value, toUnixTimestamp64Milli(max(last_ts)) AS last_at "
           f"FROM {db}.agg_1h_final WHERE {' AND '.join(where)} GROUP BY ym ORDER BY ym")
    return sql, params
