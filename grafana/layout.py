"""What the board generator and `controlroom grafana sync` both know, without the SDK: where the generated
boards are and which datasources they query (the uids that provisioning/datasources/*.yaml give)."""

from pathlib import Path

DASHBOARDS = Path(__file__).parent / "dashboards"
DATASOURCE_UID = "controlroom-clickhouse"
PLUGIN_TYPE = "grafana-clickhouse-datasource"
PROMETHEUS_UID = "controlroom-prometheus"
