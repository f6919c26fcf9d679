"""The incident correlator inside the alerter process: I/O only (controlroom/alerts/incidents.py is the logic).

The alerter hands it every command it reads and every alert event it publishes; it publishes incident
events on topic `incidents` and alert notes (assignee, comments) on `alerts.notes`, and waits for the
broker's acks like the alerter does for alerts.

Its state is a JSON file beside the alerter's (`data/alerter/incidents.json`), written just *before* the
alerter's own snapshot. So after a crash it is never older than the alerter's state: the inputs replayed
since that snapshot give alert events it has already seen (it skips them by their (starts_at, seq)) or
commands it has already applied (skipped by their content hash); output it had not saved is produced again
identically, with the same (incident_id, seq), which the sink absorbs. Without the alerter's state (a fresh
start), it starts empty too: alert sequence numbers start again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from controlroom import metrics
from controlroom.alerts.incident_rules import load_incident_types
from controlroom.alerts.incidents import IncidentCorrelator, alert_note_of
from controlroom.catalog import Catalog
from controlroom.logs import get_logger
from controlroom.schema import (
    INCIDENTS_TOPIC,
    NOTES_TOPIC,
    AlertEvent,
    AlertNote,
    ControlCommand,
    IncidentEvent,
)
from controlroom.settings import Settings

log = get_logger("incidents")


def incidents_state_path(settings: Settings) -> Path:
    return settings.data_dir / "alerter" / "incidents.json"


class IncidentRunner:
    def __init__(self, settings: Settings, catalog: Catalog, *, fresh: bool) -> None:
        self.path = incidents_state_path(settings)
        self.correlator = IncidentCorrelator(load_incident_types(settings.incident_rules_file, catalog), catalog)
        if not fresh and self.path.exists():
            self.correlator.restore(self.path.read_bytes())
            log.info("incidents restored", incidents=len(self.correlator.incidents))
        self.events: list[IncidentEvent] = []
        self.notes: list[AlertNote] = []

    def on_control(self, cmd: ControlCommand) -> None:
        self.events.extend(self.correlator.on_control(cmd))
        note = alert_note_of(cmd)
        if note is not None:
            self.notes.append(note)

    def on_alerts(self, events: list[AlertEvent]) -> None:
        self.events.extend(self.correlator.on_alerts(events))

    async def publish(self, producer: Any) -> bool:
        """Send what is pending and wait for the broker's acks; True when something was sent."""
        if not self.events and not self.notes:
            return False
        futures = [await producer.send(INCIDENTS_TOPIC, orjson.dumps(e), key=e["incident_id"].encode())
                   for e in self.events]
        futures += [await producer.send(NOTES_TOPIC, orjson.dumps(n), key=n["alert_id"].encode()) for n in self.notes]
        for f in futures:
            await f
        for e in self.events:
            metrics.INCIDENT_EVENTS.labels(e["event"]).inc()
            log.info("incident", incident_id=e["incident_id"], incident_event=e["event"], type=e["type"],
                     province=e["province"], seq=e["seq"], alert_id=e["alert_id"])
        self.events, self.notes = [], []
        return True

    def snapshot(self) -> tuple[Path, bytes]:
        """(where, what) to write atomically just before the alerter's snapshot (see the module's docstring)."""
        return self.path, self.correlator.snapshot()
