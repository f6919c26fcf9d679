"""`controlroom up` (what `make up` runs): the whole pipeline on embedded defaults, one command.

Starts the embedded broker (unless KAFKA_BOOTSTRAP is set), creates the topics, then the API
(which owns the chDB warehouse and runs the sink inside it), the streams worker, the alerter, the
notifier and the simulator as child processes. Children run in their own session so Ctrl-C reaches only this supervisor,
which stops them in order: producers first, the API (and its sink's last flush) last.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from controlroom.broker import port_is_free, start_tansu
from controlroom.catalog import default_catalog
from controlroom.errors import StartupError
from controlroom.kafka import ensure_topics, system_topics
from controlroom.logs import get_logger
from controlroom.settings import Settings

log = get_logger("supervisor")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]


def _spawn(name: str, args: list[str], env: dict[str, str]) -> Child:
    proc = subprocess.Popen([sys.executable, "-m", "controlroom.cli", *args], env=env, start_new_session=True)
    return Child(name, proc)


def _stop(children: list[Child], timeout_s: float = 20.0) -> None:
    for child in children:  # in the given order: each gets time to flush before the next stops
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("child did not stop in time; killing", child=child.name)
                child.proc.kill()
                child.proc.wait()


def _wait_healthy(url: str, children: list[Child], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in children:
            if child.proc.poll() is not None:
                raise StartupError(f"{child.name} exited with code {child.proc.returncode} while starting")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise StartupError(f"the API did not answer {url} within {timeout_s:.0f} s")


def banner(settings: Settings, bootstrap: str, embedded_broker: bool, admin_key: str | None) -> str:
    api = f"http://{settings.api_host}:{settings.api_port}"
    warehouse = "embedded chDB" if settings.is_embedded_clickhouse else "ClickHouse server"
    return "\n".join([
        "",
        "Control Room is up.",
        f"  overview  {api}/overview    (live figures: 25 feeds, 7 categories, 34 provinces; needs a key)",
        f"  series    {api}/series?feed=water_level&province=01",
        f"  wall      {api}/wall        (the live national wall in a browser; asks once for a viewer key)",
        f"  API docs  {api}/docs",
        f"  Kafka     {bootstrap}{' (embedded Tansu, memory storage)' if embedded_broker else ''}",
        f"  warehouse {warehouse}, data in {settings.data_dir}",
        *([f"  admin key {admin_key}", f"            (new at every `make up`, also in {settings.data_dir}/admin.key; "
           "send it as 'Authorization: Bearer <key>')"] if admin_key else []),
        "Publish one reading yourself (on real Kafka, kcat -P takes the same -b -t -k):",
        "  echo '{\"event_id\":\"demo-1\",\"feed\":\"water_level\",\"province\":\"01\","
        "\"ts\":\"'$(date -u +%FT%TZ)'\",\"value\":420,\"dims\":{\"station\":\"s1\"},\"source\":\"me\"}' \\",
        f"    | .venv/bin/controlroom publish -b {bootstrap} -t feeds.water_level -k 01",
        "Ctrl-C stops everything; data stays in ClickHouse for the next `make up`.",
        "",
    ])


def local_signing_key(settings: Settings) -> str:
    """The master key webhook secrets derive from, kept in data/ so subscribers' secrets survive a restart.
    Production sets NOTIFY_SIGNING_KEY from its secret store instead."""
    path = settings.data_dir / "notify_signing.key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32) + "\n")
    return path.read_text().strip()


def run_up(settings: Settings, args: argparse.Namespace) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    broker = None
    embedded_broker = "KAFKA_BOOTSTRAP" not in os.environ
    if not port_is_free(settings.api_port, settings.api_host):
        raise StartupError(f"API port {settings.api_port} is taken: stop what uses it or set API_PORT")
    if embedded_broker:
        broker = start_tansu(settings.broker_port, settings.data_dir / "broker.log")
        bootstrap = f"127.0.0.1:{settings.broker_port}"
        env.update(KAFKA_BOOTSTRAP=bootstrap, KAFKA_IDEMPOTENCE="false")  # Tansu: no InitProducerId
    else:
        bootstrap = settings.kafka_bootstrap
    effective = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    children: list[Child] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        asyncio.run(ensure_topics(effective, system_topics(default_catalog())))
        admin_key = None
        if settings.is_embedded_clickhouse:  # chDB is free until the API opens it: make a local admin key
            from api.keys_cli import bootstrap_admin_key

            admin_key = bootstrap_admin_key(settings)
            key_file = settings.data_dir / "admin.key"
            key_file.touch(mode=0o600)
            key_file.write_text(admin_key + "\n")
        env.setdefault("NOTIFY_SIGNING_KEY", local_signing_key(settings))  # the API hands out webhook secrets
        children.append(_spawn("api", ["api"], env))
        _wait_healthy(f"http://{settings.api_host}:{settings.api_port}/healthz", children, 60.0)
        children.append(_spawn("worker", ["worker"], env))
        children.append(_spawn("alerter", ["alerter"], env))
        children.append(_spawn("notifier", ["notifier"], env))
        children.append(_spawn("simulator", ["simulate"], env))
        print(banner(settings, bootstrap, embedded_broker, admin_key), file=sys.stderr, flush=True)
        while not stopping:
            for child in children:
                if child.proc.poll() is not None:
                    raise StartupError(f"{child.name} stopped unexpectedly (exit code {child.proc.returncode})")
            time.sleep(0.5)
        log.info("stopping")
        return 0
    finally:
        by_name = {c.name: c for c in children}
        _stop([by_name[n] for n in ("simulator", "worker", "alerter", "notifier", "api") if n in by_name])
        if broker is not None:
            broker.terminate()
            broker.wait(timeout=10)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up", help="run the whole system on embedded defaults (what `make up` does)")
    p.set_defaults(func=run_up)



