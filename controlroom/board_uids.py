"""The Grafana boards' UIDs: grafana/boards.py gives them to the boards it generates (and its data links point at
them), and alert links (controlroom/alerts/core.py) point at the feed explorer by its UID."""

WALL_UID = "controlroom-wall"
EXPLORER_UID = "controlroom-feed-explorer"
PIPELINE_UID = "controlroom-pipeline"
PROVINCE_UID = "controlroom-province"
INDICATORS_UID = "controlroom-indicators"
COMPLIANCE_UID = "controlroom-reporting-compliance"
AGENCIES_UID = "controlroom-agencies"
