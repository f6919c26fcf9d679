"""Why deploy/clickhouse/analyst.xml says readonly=1 and makes max_execution_time changeable_in_readonly, shown on
ClickHouse's engine (chDB): under readonly=1 the max_execution_time Grafana's plugin sends with every query fails
("Cannot modify … in readonly mode"), hence the constraint; readonly=2 would take it, but would take any other
setting too (log_queries = 0: the analyst's queries gone from the query log), hence not 2. Both refuse writes,
DDL and lowering `readonly`. Each level in a process of its own: a chDB session cannot leave a readonly mode, and a
process opens one chDB path. (Constraints themselves need ClickHouse's access control, which chDB does not run.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROBE = """
import json, sys
from chdb import session
s = session.Session(sys.argv[1])
s.query("CREATE TABLE default.t (a Int8) ENGINE = Memory")
s.query("SET readonly = " + sys.argv[2])
out = {}
for name, sql in [("timeout", "SET max_execution_time = 65"), ("query_log", "SET log_queries = 0"),
                  ("select", "SELECT count() FROM default.t"), ("insert", "INSERT INTO default.t VALUES (1)"),
                  ("ddl", "CREATE TABLE default.u (a Int8) ENGINE = Memory"), ("lower", "SET readonly = 0")]:
    try:
        s.query(sql)
        out[name] = "ok"
    except Exception as exc:
        out[name] = str(exc)
print(json.dumps(out))
"""


def probe(tmp_path: Path, level: int) -> dict[str, str]:
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / f"ro{level}"), str(level)],
                            capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_readonly_1_refuses_the_plugins_timeout_and_readonly_2_takes_any_setting(tmp_path: Path) -> None:
    one, two = probe(tmp_path, 1), probe(tmp_path, 2)
    assert "Cannot modify 'max_execution_time' setting in readonly mode" in one["timeout"]
    assert "Cannot modify 'log_queries' setting in readonly mode" in one["query_log"]
    assert two["timeout"] == two["query_log"] == "ok"
    for level in (one, two):
        assert level["select"] == "ok"
        assert "Cannot execute query in readonly mode" in level["insert"]
        assert "Cannot execute query in readonly mode" in level["ddl"]
        assert "Cannot modify 'readonly' setting in readonly mode" in level["lower"]
