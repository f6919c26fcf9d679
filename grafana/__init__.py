"""Grafana boards as code (issue 5): panels and boards (grafana-foundation-sdk), the plugin's macro expansion
(for the SQL tests), the generator of grafana/dashboards/*.json and `controlroom grafana sync`."""
