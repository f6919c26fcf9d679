"""Opt-in memory probe of the API process: CONTROLROOM_TRACEMALLOC=/path/probe.jsonl.

Off unless the variable is set (tracemalloc slows every allocation). When set, the API starts tracemalloc at
startup and appends one JSON line every CONTROLROOM_TRACEMALLOC_EVERY_S seconds (60 by default): the process's
VmRSS / RssAnon / RssFile, the Python heap tracemalloc sees, Arrow's memory pool and, in embedded mode, chDB's
own accounting (MemoryTracking, every non-empty cache, jemalloc allocated/resident). The first sample keeps a
tracemalloc snapshot; at shutdown a last line holds the 25 source lines whose Python memory grew most from then to
the last sample, so "what grows between minute 1 and the end" reads straight from the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from controlroom.logs import get_logger
from controlroom.warehouse import ChdbWarehouse, Warehouse

log = get_logger("api.memprobe")

PROC_FIELDS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")
_JEMALLOC = re.compile(r"Allocated: (\d+), active: (\d+), metadata: (\d+).*?resident: (\d+), mapped: (\d+), "
                       r"retained: (\d+)")


def proc_status_mb(pid: int | str = "self", fields: tuple[str, ...] = PROC_FIELDS) -> dict[str, float]:
    """Memory lines of /proc/<pid>/status in MB (missing → absent: the process is gone)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in fields:
                out[name] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


def jemalloc_mb(stats_text: str) -> dict[str, float]:
    """The totals line of chDB's jemalloc statistics (system.jemalloc_stats), in MB."""
    m = _JEMALLOC.search(stats_text)
    if not m:
        return {}
    names = ("allocated", "active", "metadata", "resident", "mapped", "retained")
    return {f"jemalloc_{n}_mb": round(int(v) / 2**20, 1) for n, v in zip(names, m.groups(), strict=True)}


def chdb_memory(warehouse: Warehouse) -> dict[str, float]:
    """chDB's view of its own memory: tracked bytes, every non-empty cache and jemalloc's totals (MB)."""
    if not isinstance(warehouse, ChdbWarehouse):
        return {}  # a server's caches live in the server, not in this process
    rows = warehouse.query("SELECT metric, value FROM system.metrics WHERE (metric LIKE '%CacheBytes' "
                           "OR metric LIKE 'MemoryTracking%') AND value > 0")
    out = {str(r["metric"]): round(float(r["value"]) / 2**20, 1) for r in rows}
    text = warehouse.query("SELECT * FROM system.jemalloc_stats")
    out.update(jemalloc_mb(str(next(iter(text[0].values()))) if text else ""))
    return out


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, limit: int = 25) -> list[dict[str, Any]]:
    stats = after.compare_to(before, "lineno")
    return [{"where": str(s.traceback[0]), "grew_kb": round(s.size_diff / 1024, 1), "now_kb": round(s.size / 1024, 1),
             "count_diff": s.count_diff} for s in stats[:limit]]


class MemoryProbe:
    def __init__(self, path: Path, every_s: float, warehouse: Warehouse) -> None:
        self.path, self.every_s, self.warehouse = path, every_s, warehouse
        self.t0 = time.monotonic()
        self.first: tracemalloc.Snapshot | None = None
        self.last: tracemalloc.Snapshot | None = None
        self.first_at_s = self.last_at_s = 0.0

    def sample(self) -> dict[str, Any]:
        current, peak = tracemalloc.get_traced_memory()
        doc: dict[str, Any] = {"t_s": round(time.monotonic() - self.t0, 1), **proc_status_mb(),
                               "python_heap_mb": round(current / 2**20, 1),
                               "python_heap_peak_mb": round(peak / 2**20, 1),
                               "arrow_pool_mb": round(pa.total_allocated_bytes() / 2**20, 1)}
        try:
            doc.update(chdb_memory(self.warehouse))
        except Exception as exc:  # a probe must never take the API down
            doc["chdb_error"] = str(exc)[:200]
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        with self.path.open("ab") as f:
            f.write(orjson.dumps(doc) + b"\n")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):  # the interval elapsed: sample
                await asyncio.wait_for(stop.wait(), self.every_s)
            if stop.is_set():
                break
            doc = await asyncio.to_thread(self.sample)
            self.last = tracemalloc.take_snapshot()  # the diff's end: the last sample while running, not the
            if self.first is None:  # shutdown's flush; its start: the first sample (after one interval)
                self.first, self.first_at_s = self.last, doc["t_s"]
            self.last_at_s = doc["t_s"]
            self.write(doc)
        if self.first is not None and self.last is not None:
            self.write({"python_growth_s": [self.first_at_s, self.last_at_s], "top": top_growth(self.first, self.last)})


def start_probe(warehouse: Warehouse, stop: asyncio.Event) -> asyncio.Task[None] | None:
    """Starts the probe when CONTROLROOM_TRACEMALLOC names a file; None (and no tracing) otherwise."""
    target = os.environ.get("CONTROLROOM_TRACEMALLOC")
    if not target:
        return None
    tracemalloc.start()
    every_s = float(os.environ.get("CONTROLROOM_TRACEMALLOC_EVERY_S", "60"))
    log.info("memory probe on", path=target, every_s=every_s)
    return asyncio.create_task(MemoryProbe(Path(target), every_s, warehouse).run(stop), name="memprobe")
