"""The API's memory tools: the probe's parsers, the chDB cache bounds on a real session, glibc trimming."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

from api.memprobe import chdb_memory, jemalloc_mb, proc_status_mb, top_growth
from controlroom.native_memory import release_free_memory, tune_malloc
from controlroom.warehouse import CHDB_SERVER_SETTINGS, ChdbWarehouse, chdb_session_path, release_engine_memory


def test_proc_status_of_this_process() -> None:
    mem = proc_status_mb(os.getpid())
    assert mem["VmRSS"] > 0 and mem["RssAnon"] > 0
    assert abs(mem["RssAnon"] + mem["RssFile"] - mem["VmRSS"]) < mem["VmRSS"] * 0.1  # shmem is the rest
    assert proc_status_mb(2**22 + 1) == {}  # no such process


def test_jemalloc_totals_line() -> None:
    text = ("Arenas: 4\nAllocated: 32001240, active: 32587776, metadata: 3350880 (n_thp 0, edata 162816, "
            "rtree 2097152), resident: 39903232, mapped: 47415296, retained: 7634944\n")
    assert jemalloc_mb(text) == {"jemalloc_allocated_mb": 30.5, "jemalloc_active_mb": 31.1,
                                 "jemalloc_metadata_mb": 3.2, "jemalloc_resident_mb": 38.1,
                                 "jemalloc_mapped_mb": 45.2, "jemalloc_retained_mb": 7.3}
    assert jemalloc_mb("no stats") == {}


def test_top_growth_names_the_growing_line() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [bytes(1000) + bytes([i % 256]) for i in range(2000)]  # ≈ 2 MB from this line
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    top = top_growth(before, after, limit=3)
    assert "test_api_memory.py" in top[0]["where"] and top[0]["grew_kb"] > 1900 and len(kept) == 2000


def test_chdb_session_has_bounded_caches(tmp_path: Path) -> None:
    assert chdb_session_path("/x/wh").startswith("/x/wh?mark_cache_size=67108864&")
    wh = ChdbWarehouse(str(tmp_path / "wh"), "cr")
    try:
        rows = wh.query("SELECT name, toUInt64(value) AS v FROM system.server_settings WHERE name IN "
                        "{names:Array(String)}", {"names": list(CHDB_SERVER_SETTINGS)})
        assert {r["name"]: r["v"] for r in rows} == CHDB_SERVER_SETTINGS
        mem = chdb_memory(wh)
        # chDB reports MemoryTracking (and MemoryTrackingUncorrected) only when above 0 at that instant
        assert mem["jemalloc_resident_mb"] > 0 and any(k.startswith("MemoryTracking") for k in mem)
        # a big GROUP BY leaves its freed pages with chDB's jemalloc; the purge gives them back
        wh.query("SELECT count() AS c FROM (SELECT number % 3000000 AS k, any(toString(number)) AS v "
                 "FROM numbers(6000000) GROUP BY k)")
        held = chdb_memory(wh)["jemalloc_resident_mb"]
        release_engine_memory(wh)
        assert chdb_memory(wh)["jemalloc_resident_mb"] < held - 50
    finally:
        wh.close()


def test_malloc_tuning_and_trim_run() -> None:
    assert tune_malloc()  # glibc (Linux): every mallopt accepted
    before = proc_status_mb(os.getpid())["RssAnon"]
    junk = [bytearray(200_000) for _ in range(500)]  # 100 MB under the mmap threshold would be kept...
    del junk
    release_free_memory()
    assert proc_status_mb(os.getpid())["RssAnon"] < before + 20  # ...and is given back
