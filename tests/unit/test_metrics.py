"""controlroom/metrics.py and the metrics side of `make up`: the lag snapshot, the per-service server (a port taken
is not fatal), the ports `up` gives its children and its banner; and the one log format (controlroom/logs.py)."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import orjson
from prometheus_client import generate_latest

from controlroom.broker import free_port
from controlroom.metrics import CONSUMER_LAG, serve
from controlroom.settings import METRICS_PORTS, Settings
from controlroom.supervisor import banner, metrics_ports


def lag_lines() -> list[str]:
    return [line for line in generate_latest().decode().splitlines()
            if line.startswith('controlroom_consumer_lag{group="unit"')]


def test_a_lag_sample_replaces_the_group_whole() -> None:
    CONSUMER_LAG.set("unit", {("feeds.a", 0): 5, ("feeds.a", 1): 0})
    assert lag_lines() == ['controlroom_consumer_lag{group="unit",partition="0",topic="feeds.a"} 5.0',
                           'controlroom_consumer_lag{group="unit",partition="1",topic="feeds.a"} 0.0']
    CONSUMER_LAG.set("unit", {("feeds.a", 1): 2})  # partition 0 revoked
    assert lag_lines() == ['controlroom_consumer_lag{group="unit",partition="1",topic="feeds.a"} 2.0']
    CONSUMER_LAG.set("unit", {})


def test_serve_answers_and_a_taken_port_is_not_fatal() -> None:
    assert serve("worker", "127.0.0.1", 0) is None  # off
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        assert serve("worker", "127.0.0.1", held.getsockname()[1]) is None  # logged; the service runs on
    port = free_port()
    assert serve("sink", "127.0.0.1", port) == port
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert "# TYPE controlroom_sink_rows_out_total counter" in body and "controlroom_consumer_lag" in body


def test_up_gives_each_child_its_own_port_and_prints_them() -> None:
    settings = Settings()
    assert metrics_ports(settings, {}, lambda port, host: True) == {
        "worker": 9101, "alerter": 9103, "notifier": 9104, "simulator": 9105}
    moved = metrics_ports(settings, {}, lambda port, host: port != METRICS_PORTS["worker"])
    assert moved["worker"] not in METRICS_PORTS.values() and len(set(moved.values())) == 4
    assert metrics_ports(settings, {"METRICS_PORT": "0"}, lambda port, host: True) == {}
    text = banner(settings, "127.0.0.1:9092", "", None, {"worker": 9101, "simulator": 9105})
    assert "http://127.0.0.1:8000/metrics  (Prometheus text: the API and its sink)" in text
    assert "http://127.0.0.1:9101/metrics  (worker)" in text and "http://127.0.0.1:9105/metrics  (simulator)" in text


LIBRARY_LINES = """
import logging
from controlroom.logs import configure_logging, get_logger
configure_logging("info", "json", process="unit")
get_logger("ours").info("our line", n=1)
logging.getLogger("aiokafka.consumer").info("Joined group %r", "g")
logging.getLogger("faust.worker").info("hidden below WARNING")
logging.getLogger("mode.service").warning("a warning of mode")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("uvicorn.error").exception("boom")
"""


def test_library_lines_go_through_the_same_json_renderer() -> None:
    # a child process: configuring logging here would take pytest's own handlers off the root logger
    out = subprocess.run([sys.executable, "-c", LIBRARY_LINES], capture_output=True, check=True, text=True)
    lines = [orjson.loads(line) for line in out.stderr.splitlines()]
    assert [(d.get("logger"), d["event"], d["level"], d["process"]) for d in lines] == [
        (None, "our line", "info", "unit"),
        ("aiokafka.consumer", "Joined group 'g'", "info", "unit"),
        ("mode.service", "a warning of mode", "warning", "unit"),
        ("uvicorn.error", "boom", "error", "unit"),
    ]
    assert "ZeroDivisionError" in lines[-1]["exception"] and "positional_args" not in lines[1]
