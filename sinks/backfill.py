"""`controlroom backfill --from --to`: recompute the stored 1-minute aggregates of a past range from the
stored raw readings (deliberate historical loads, and readings that came after the amend horizon).

Runs one day at a time (progress shown), each an idempotent INSERT … SELECT (sinks/recompute.py), so a
backfill cut short is simply run again. The rollups (agg_1h, agg_1d) follow through their views.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from controlroom.errors import ConfigError
from controlroom.warehouse import Warehouse, check_identifier
from sinks.recompute import backfill_count_sql, backfill_sql

DAY_MS = 86_400_000


@dataclass(frozen=True)
class BackfillResult:
    from_ms: int
    to_ms: int
    windows: int  # agg_1m rows written (series × window × source partition)
    readings: int  # raw readings they summarize

    def as_dict(self) -> dict[str, int | str]:
        return {"from": _iso(self.from_ms), "to": _iso(self.to_ms), "windows": self.windows,
                "readings": self.readings}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def chunks(from_ms: int, to_ms: int, window_s: int) -> list[tuple[int, int]]:
    """[from, to) widened to whole windows, cut into days aligned to windows."""
    size = window_s * 1000
    if to_ms <= from_ms:
        raise ConfigError("backfill: --to must be after --from")
    lo, hi = from_ms - from_ms % size, -(-to_ms // size) * size
    step = max(size, DAY_MS - DAY_MS % size)
    return [(a, min(a + step, hi)) for a in range(lo, hi, step)]


def backfill(wh: Warehouse, from_ms: int, to_ms: int, window_s: int,
             progress: Callable[[int, int, BackfillResult], None] | None = None) -> BackfillResult:
    db = check_identifier(wh.database)
    parts = chunks(from_ms, to_ms, window_s)
    windows = readings = 0
    for i, (a, b) in enumerate(parts, 1):
        wh.command(backfill_sql(db, a, b, window_s))
        counted = wh.query(backfill_count_sql(db, a, b, window_s))
        windows += int(counted[0]["w"] or 0)
        readings += int(counted[0]["r"] or 0)
        if progress is not None:
            progress(i, len(parts), BackfillResult(parts[0][0], b, windows, readings))
    return BackfillResult(parts[0][0], parts[-1][1], windows, readings)
