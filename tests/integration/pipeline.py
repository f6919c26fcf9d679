"""Helpers to run the real pipeline in tests: worker subprocess, in-process sink, polling."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from controlroom.broker import stop_process
from controlroom.catalog import default_catalog
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse
from sinks.rows import Record

ROOT = Path(__file__).resolve().parents[2]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment a child process needs to rebuild the same Settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        raw = value.get_secret_value() if hasattr(value, "get_secret_value") else value
        if raw is not None:
            env[name.upper()] = str(raw).lower() if isinstance(raw, bool) else str(raw)
    return env


def seeded_warehouse(settings: Settings, seed: Callable[[Warehouse], None]) -> None:
    """Migrate the warehouse of `settings`, apply `seed` to it and close it again: ready for a command line
    tool in another process (chDB: one process per path)."""
    from controlroom.catalog import default_catalog
    from controlroom.warehouse import open_warehouse
    from sinks.migrate import migrate

    wh = open_warehouse(settings)
    try:
        migrate(wh, default_catalog())
        seed(wh)
    finally:
        wh.close()


def start_service(command: str, settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """`controlroom <command>` (worker, alerter, notifier…) as a child process logging to log_path."""
    return subprocess.Popen([sys.executable, "-m", "controlroom.cli", command], env=settings_env(settings),
                            cwd=ROOT, stdout=log_path.open("ab"), stderr=subprocess.STDOUT)


def start_worker(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    return start_service("worker", settings, log_path)


def wait_http(url: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60.0) -> None:
    """Until GET `url` answers 200 from the child `proc` (which must not exit meanwhile; its log tells why)."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, f"exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} did not answer within {timeout_s:.0f} s: " \
                                            f"{log_path.read_text()[-2000:]}"
        time.sleep(0.1)


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Poll `check` (blocking) until it returns something true; fail naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout_s:.0f} s")


async def wait_for(check: Callable[[], Any], timeout_s: float = 90.0, what: str = "condition") -> Any:
    """Poll `check` (sync, run in a thread) until it returns a truthy value."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last value: {last!r}")


def poll(check: Callable[[], Any], what: str, timeout_s: float = 90.0, every_s: float = 0.5) -> Any:
    """Call `check` until it returns a truthy value, which is returned (sync twin of wait_for)."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last value: {last!r}")


def reading(event_id: str, feed: str, province: str, ts_ms: int, value: float, **dims: str) -> bytes:
    return orjson.dumps({"event_id": event_id, "feed": feed, "province": province, "ts": ts_ms,
                         "value": value, "dims": dims, "source": "test"})


def sent_record(topic: str, partition: int, offset: int, ts_ms: int, value: bytes) -> Record:
    """A Kafka record as a well-behaved producer sends it: its header `agency` names the supplier of its series
    (feed and province read from the reading; a batch: its first reading)."""
    doc = orjson.loads(value)
    doc = doc[0] if isinstance(doc, list) else doc
    catalog = default_catalog()
    province = catalog.current_province(str(doc.get("province"))) or ""
    return Record(topic, partition, offset, ts_ms, value, catalog.registry.supplier(str(doc.get("feed")), province))


@contextmanager
def services(settings: Settings, log_dir: Path, *commands: str,
             overrides: Mapping[str, Mapping[str, object]] | None = None) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`controlroom <command>` processes (worker, alerter, notifier…), each logging to log_dir/<command>.log;
    stopped on exit (SIGTERM, then SIGKILL after 15 s). `overrides`: settings of one command only (its own
    metrics port, its own warehouse)."""
    overrides = overrides or {}
    procs = [start_service(cmd, settings.model_copy(update=dict(overrides.get(cmd, {}))), log_dir / f"{cmd}.log")
             for cmd in commands]
    try:
        yield procs
    finally:
        for p in procs:
            stop_process(p, 15.0)
