"""grafana/macros.py expands as the ClickHouse plugin does (expected strings from the plugin's own Go tests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from grafana.macros import ALL, QueryContext, Variable, expand

FROM = int(datetime(2014, 11, 12, 11, 45, 26, 123000, tzinfo=UTC).timestamp() * 1000)
TO = int(datetime(2015, 11, 12, 11, 45, 26, 456000, tzinfo=UTC).timestamp() * 1000)
C = QueryContext(from_ms=FROM, to_ms=TO, interval_ms=60_000)


@pytest.mark.parametrize(("sql", "out"), [
    ("SELECT $__timeInterval($__fromTime) AS from_time",
     "SELECT toStartOfInterval(toDateTime(toDateTime(1415792726)), INTERVAL 60 second) AS from_time"),
    ("SELECT $__timeInterval_ms($__fromTime_ms)",
     "SELECT toStartOfInterval(toDateTime64(fromUnixTimestamp64Milli(1415792726123), 3), INTERVAL 60000 millisecond)"),
    ("select * from foo where $__timeFilter(coalesce(closed_at, $__toTime))",
     "select * from foo where coalesce(closed_at, toDateTime(1447328726)) >= toDateTime(1415792726) AND "
     "coalesce(closed_at, toDateTime(1447328726)) <= toDateTime(1447328726)"),
    ("select * from foo where msg = 'it\\'s -- fine' and $__fromTime",
     "select * from foo where msg = 'it\\'s -- fine' and toDateTime(1415792726)"),
    ("WHERE $__timeFilter_ms(ts)",
     "WHERE ts >= fromUnixTimestamp64Milli(1415792726123) AND ts <= fromUnixTimestamp64Milli(1447328726456)"),
    ("WHERE $__dateFilter(d)", "WHERE d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')"),
    ("x / $__interval_s -- a comment $__toTime", "x / 60 "),
    ("$__unknownMacro(a)", "$__unknownMacro(a)"),
])
def test_backend_macros(sql: str, out: str) -> None:
    assert expand(sql, C) == out


def test_interval_is_at_least_one_second() -> None:
    c = QueryContext(from_ms=FROM, to_ms=TO, interval_ms=200)
    assert expand("$__interval_s $__timeInterval(t)", c) == "1 toStartOfInterval(toDateTime(t), INTERVAL 1 second)"


def test_template_variables_and_all() -> None:
    v = {"feed": Variable("water_level"), "p": Variable(["01", "79"], options=["01", "48", "79"]),
         "a": Variable(ALL, options=["01", "48"]), "c": Variable(ALL, options=["x"], all_value=".*")}
    c = QueryContext(from_ms=FROM, to_ms=TO, interval_ms=1000, variables=v)
    assert expand("feed = '${feed}' AND p IN ($p) AND a IN (${a}) AND c = '$c' AND $other",
                  c) == "feed = 'water_level' AND p IN ('01','79') AND a IN ('01','48') AND c = '.*' AND $other"
    assert expand("$__conditionalAll(p IN ($p), $p) AND $__conditionalAll(a IN ($a), $a)",
                  c) == "p IN ('01','79') AND 1=1"
    assert expand("$__conditionalAll(x IN ($e), ${e})",
                  QueryContext(FROM, TO, 1000, {"e": Variable("")})) == "1=1"
