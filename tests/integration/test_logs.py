"""One log format: with LOG_FORMAT=json every line a service writes is one JSON object — our own lines and the
libraries' (uvicorn and its access log in the API; aiokafka, Faust and mode in the worker), which go through
structlog's formatter (controlroom/logs.py)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from controlroom.broker import free_port, stop_process
from controlroom.settings import Settings
from tests.integration.pipeline import start_service, wait_http

pytestmark = pytest.mark.integration


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of the log as a JSON object; fails naming the first line that is not one."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"{path.name} line {n} is not JSON: {line[:300]}") from None
        assert isinstance(doc, dict), f"{path.name} line {n} is not a JSON object: {line[:300]}"
        assert {"event", "level", "timestamp", "process"} <= set(doc), f"{path.name} line {n}: {line[:300]}"
        out.append(doc)
    return out


def wait_for_line(path: Path, text: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(encoding="utf-8", errors="replace"):
        assert proc.poll() is None, f"exited with {proc.returncode}: {path.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout_s:.0f} s: {path.read_text()[-2000:]}"
        time.sleep(0.2)


def test_api_logs_are_json_lines_access_log_included(broker: str, make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(kafka_bootstrap=broker, log_format="json", api_port=free_port())
    log = tmp_path / "api.log"
    proc = start_service("api", settings, log)
    base = f"http://127.0.0.1:{settings.api_port}"
    try:
        wait_http(f"{base}/healthz", proc, log)
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 200
        assert httpx.get(f"{base}/overview", timeout=5).status_code == 401  # no key
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        stop_process(proc, 15)
    lines = json_lines(log)
    access = [d for d in lines if d.get("logger") == "uvicorn.access"]
    assert {(d["method"], d["path"], d["status"]) for d in access} >= {
        ("GET", "/healthz", 200), ("GET", "/metrics", 200), ("GET", "/overview", 401)}, access
    assert all(d["process"] == "api" and d["level"] == "info" for d in access)
    uvicorn = {d["event"] for d in lines if d.get("logger") == "uvicorn.error"}
    assert any(e.startswith("Uvicorn running on") for e in uvicorn), uvicorn  # uvicorn's own lines, as JSON
    assert any(d["event"] == "warehouse ready" for d in lines)  # ours


def test_worker_logs_are_json_lines_library_lines_included(broker: str, make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(kafka_bootstrap=broker, log_format="json")
    log = tmp_path / "worker.log"
    proc = start_service("worker", settings, log)
    try:
        wait_for_line(log, "partitions assigned", proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        stop_process(proc, 15)
    lines = json_lines(log)
    libraries = {d["logger"].split(".")[0] for d in lines if "logger" in d}
    assert "aiokafka" in libraries, libraries  # the group join, through our formatter
    assert any(d["event"] == "partitions assigned" and d["process"] == "worker" for d in lines)
