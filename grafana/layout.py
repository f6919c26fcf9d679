"""What the board generator and `controlroom grafana sync` both know, without the SDK: where the generated
boards are and which datasource they query (the uid that provisioning/datasources/clickhouse.yaml gives)."""

from pathlib import Path

DASHBOARDS = Path(__file__).parent / "dashboards"
DATASOURCE_UID = "controlroom-clickhouse"
PLUGIN_TYPE = "grafana-clickhouse-datasource"
