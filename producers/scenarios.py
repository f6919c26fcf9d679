"""Scenarios: several feeds of one province moved together, as a real event would (issue 13).

`controlroom simulate --scenario flood:province=46` adds simulator incidents (producers/simulator.py) that
make the alerts of one incident type fire together, so an incident forms end to end:
- flood: the province's river stations rise (×1.6 over `ramp` seconds: about 560 cm, above alarm level
  III), search-and-rescue incidents of type flood (+4 per report), calls to hotlines 114 and 115 (×4 + 50
  per 30 s report) and citizen reports on infrastructure and environment (×4 + 20) go up: each report alone
  is above the shipped per-minute thresholds, so the alerts hold whatever the reports' jitter.
Options: province (required), start (+seconds or ISO time, default +0), duration (s, default 3600), ramp
(s, default 300). With the shipped rules (controlroom/data/rules.yaml), the water level fires within about
a minute (alarm level I), the calls (`hotline_calls_high`) and reports (`citizen_reports_high`) within a
minute, a rescue report (`sar_flood_incidents`) within its 5-minute cadence, and the `flood` incident
(controlroom/data/incidents.yaml) opens at the second distinct signal.
"""

from __future__ import annotations

from datetime import datetime

from controlroom.catalog import Catalog
from producers.simulator import Incident

SCENARIOS = ("flood",)
_OPTIONS = ("province", "start", "duration", "ramp")


def parse_scenario(spec: str, now_ms: int, catalog: Catalog) -> list[Incident]:
    """`name:key=value,…` → the simulator incidents that play it."""
    name, _, rest = spec.partition(":")
    if name not in SCENARIOS:
        raise ValueError(f"scenario {name!r} is not one of {', '.join(SCENARIOS)}")
    opts: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in _OPTIONS:
            raise ValueError(f"scenario option {part!r}: expected one of {', '.join(_OPTIONS)} as key=value")
        opts[key.strip()] = value.strip()
    province = opts.get("province")
    if province not in catalog.provinces:
        raise ValueError(f"scenario {spec!r}: province must be one of the 34 province codes (e.g. province=46)")
    try:
        start = opts.get("start", "+0")
        start_ms = now_ms + int(float(start[1:]) * 1000) if start.startswith("+") else int(
            datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() * 1000)
        end_ms = start_ms + int(float(opts.get("duration", "3600")) * 1000)
        ramp_s = float(opts.get("ramp", "300"))
    except ValueError as exc:
        raise ValueError(f"scenario {spec!r}: {exc}") from exc

    def spike(feed: str, dims: frozenset[str], factor: float, add: float, ramp: float = 0.0) -> Incident:
        return Incident("spike", start_ms, end_ms, feed, province, factor=factor, dims=dims, add=add, ramp_s=ramp)

    return [
        spike("water_level", frozenset(), 1.6, 0.0, ramp_s),
        spike("sar_incidents", frozenset({"type=flood"}), 1.0, 4.0),
        spike("hotline_calls", frozenset({"line=114", "line=115"}), 4.0, 50.0),
        spike("citizen_feedback", frozenset({"topic=infrastructure", "topic=environment"}), 4.0, 20.0),
    ]
