"""`controlroom up` (what `make up` runs): the whole pipeline on embedded defaults, one command.

Starts a local broker (unless KAFKA_BOOTSTRAP is set: Apache Kafka where Java 17 and its jars are, its data in
data/kafka kept across restarts; else Tansu, in memory; BROKER forces one), creates the topics, then the API
(which owns the chDB warehouse and runs the sink inside it), the streams worker, the alerter, the
notifier and the simulator as child processes. Children run in their own session so Ctrl-C reaches only this supervisor,
which stops them in order: producers first, the API (and its sink's last flush) last. Each child gets its own
METRICS_PORT (metrics_ports); the banner lists every /metrics.

A child that exits on its own is restarted after a backoff (RestartPolicy: the numbers and why are below); one that
keeps dying stops everything with a message naming it. The restarts per child are in data/supervisor.json, which the
API (itself a child) shows in GET /healthz.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx

from controlroom.broker import (
    choose_broker,
    free_port,
    has_idempotence,
    kafka_version,
    port_is_free,
    start_broker,
    stop_process,
)
from controlroom.catalog import default_catalog
from controlroom.errors import ControlRoomError, StartupError
from controlroom.kafka import ensure_topics, system_topics
from controlroom.logs import get_logger
from controlroom.settings import METRICS_PORTS, Settings

log = get_logger("supervisor")


# Restart policy. A child killed by something transient (the OOM killer, an operator's kill -9, a lost broker
# connection) is usually fine again at once, so the first restart waits only RESTART_BASE_DELAY_S; each further one
# doubles the wait (0.5, 1, 2, 4, 8 s) so a failing child does not spin the CPU or flood the log, up to
# RESTART_MAX_DELAY_S. A child that needs more than RESTART_MAX restarts within RESTART_WINDOW_S is crash-looping
# (bad configuration, a broken dependency): restarting it again only hides that, so everything stops with a message
# naming it. The five delays add up to 15.5 s, well inside the window, so a child that dies while starting reaches
# the cap within it; a child that stayed up a whole window starts again from the shortest delay.
RESTART_BASE_DELAY_S = 0.5
RESTART_MAX_DELAY_S = 10.0
RESTART_MAX = 5
RESTART_WINDOW_S = 60.0
POLL_S = 0.2  # how often the supervisor looks at its children: a dead child is noticed within this
STATUS_FILE = "supervisor.json"  # in settings.data_dir: restarts per child, read by the API's GET /healthz
# producers first; the API's sink flushes last
STOP_ORDER = ("reports", "simulator", "worker", "alerter", "notifier", "api")


class ChildFailed(ControlRoomError):
    """A child kept dying: more restarts than the policy allows within its window."""


@dataclass(frozen=True)
class RestartDecision:
    action: Literal["restart", "give_up", "ignore"]  # ignore: we are stopping, the exit is ours
    attempt: int = 0  # restarts within the window, this one included (give_up: the ones already made)
    delay_s: float = 0.0
    history: tuple[float, ...] = ()  # restart times to remember for the next decision (inside the window)


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a child that exited: pure, so it is tested with plain numbers (tests/unit)."""

    base_delay_s: float = RESTART_BASE_DELAY_S
    max_delay_s: float = RESTART_MAX_DELAY_S
    max_restarts: int = RESTART_MAX
    window_s: float = RESTART_WINDOW_S

    def decide(self, restarted_at: Sequence[float], now: float, *, stopping: bool = False) -> RestartDecision:
        """`restarted_at`: monotonic times of this child's earlier restarts; `now`: when its exit was seen."""
        if stopping:
            return RestartDecision("ignore")
        recent = tuple(t for t in restarted_at if now - t < self.window_s)
        if len(recent) >= self.max_restarts:
            return RestartDecision("give_up", attempt=len(recent), history=recent)
        attempt = len(recent) + 1
        delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return RestartDecision("restart", attempt=attempt, delay_s=delay, history=(*recent, now))


def describe_exit(returncode: int) -> str:
    """Popen's return code in words: a negative one is the signal that ended the process."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def _signal_name(returncode: int) -> str | None:
    return describe_exit(returncode).removeprefix("signal ") if returncode < 0 else None


@dataclass
class Child:
    name: str
    args: list[str]
    proc: subprocess.Popen[bytes]
    restarts: int = 0  # since `up` started: what /healthz shows
    restarted_at: tuple[float, ...] = ()  # the policy's memory (monotonic times inside its window)
    restart_due: float | None = None  # set while the child waits out its backoff
    last_exit: int | None = None
    own_env: dict[str, str] = field(default_factory=dict)  # on top of the shared environment (its METRICS_PORT)


def _popen(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # our own CLI in this interpreter, an argument list, no shell
    return subprocess.Popen([sys.executable, "-m", "controlroom.cli", *args], env=env,  # noqa: S603
                            start_new_session=True)


def _spawn(name: str, args: list[str], env: dict[str, str], own_env: dict[str, str] | None = None) -> Child:
    own = own_env or {}
    return Child(name, args, _popen(args, {**env, **own}), own_env=own)


def write_status(path: Path, children: Sequence[Child]) -> None:
    """Atomically (a rename): the API may read it at any moment. A failure is logged, never fatal: the children
    matter more than the report on them."""
    status = {
        "pid": os.getpid(),
        "updated_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "restarts": {c.name: c.restarts for c in children},
        "children": {c.name: {"pid": c.proc.pid, "running": c.restart_due is None and c.proc.poll() is None,
                              "restarts": c.restarts, "last_exit": c.last_exit} for c in children},
    }
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(status, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the supervisor status", path=str(path), error=str(exc))


def supervisor_health(data_dir: Path) -> dict[str, Any] | None:
    """For GET /healthz in the API: `{"restarts": {child: n}}` when this process runs under `controlroom up`, else None.
    A file left by another or a dead supervisor (its pid is not our parent's) is ignored."""
    try:
        status = json.loads((data_dir / STATUS_FILE).read_text())
        if status.get("pid") != os.getppid() or not isinstance(status.get("restarts"), dict):
            return None
        return {"restarts": {str(k): int(v) for k, v in status["restarts"].items()}}
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def supervise(children: Sequence[Child], env: dict[str, str], policy: RestartPolicy, status_path: Path,
              stopping: Callable[[], bool], broker: subprocess.Popen[bytes] | None = None,
              broker_name: str = "the local broker") -> None:
    """Until `stopping()`: restart children that exit, per `policy`. Raises ChildFailed when one keeps dying, or
    when the local `broker` stops (Tansu's topics were in memory; Apache Kafka dying is not something to hide)."""
    while not stopping():
        if broker is not None and broker.poll() is not None:
            raise ChildFailed(f"{broker_name} stopped ({describe_exit(broker.returncode)}); stopping everything")
        now = time.monotonic()
        for child in children:
            if child.restart_due is not None:
                if now >= child.restart_due and not stopping():
                    child.proc = _popen(child.args, {**env, **child.own_env})
                    child.restart_due = None
                    log.info("child restarted", child=child.name, pid=child.proc.pid, restarts=child.restarts)
                    write_status(status_path, children)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            decision = policy.decide(child.restarted_at, now, stopping=stopping())
            if decision.action == "ignore":
                return
            child.last_exit = code
            if decision.action == "give_up":
                message = (f"{child.name} exited ({describe_exit(code)}) after {decision.attempt} restarts within "
                           f"{policy.window_s:.0f} s; stopping everything")
                log.error("child keeps failing", child=child.name, exit_code=code, signal=_signal_name(code),
                          restarts=decision.attempt, window_s=policy.window_s)
                raise ChildFailed(message)
            child.restarts += 1
            child.restarted_at = decision.history
            child.restart_due = now + decision.delay_s
            log.warning("child exited unexpectedly; restarting", child=child.name, pid=child.proc.pid, exit_code=code,
                        signal=_signal_name(code), attempt=decision.attempt, delay_s=decision.delay_s,
                        restarts=child.restarts)
            write_status(status_path, children)
        time.sleep(POLL_S)


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


def _wait_healthy(url: str, children: list[Child], timeout_s: float, stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stopping():
        for child in children:
            if child.proc.poll() is not None:
                raise StartupError(f"{child.name} exited with code {child.proc.returncode} while starting")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    if not stopping():
        raise StartupError(f"the API did not answer {url} within {timeout_s:.0f} s")


CHILDREN = (("worker", "worker"), ("alerter", "alerter"), ("notifier", "notifier"), ("simulator", "simulate"))


def metrics_ports(settings: Settings, env: Mapping[str, str],
                  is_free: Callable[[int, str], bool] = port_is_free) -> dict[str, int]:
    """Each child's metrics port (by child name): its service's default (METRICS_PORTS), or a free one where that is
    taken; none at all when METRICS_PORT=0 is given to `up` (any other METRICS_PORT would be one port for every
    child, so it is not passed on)."""
    if env.get("METRICS_PORT", "").strip() == "0":
        return {}
    return {name: port if is_free(port, settings.metrics_host) else free_port()
            for name, port in ((name, METRICS_PORTS[cmd]) for name, cmd in CHILDREN)}


def banner(settings: Settings, bootstrap: str, broker_note: str, admin_key: str | None,
           metrics: Mapping[str, int] | None = None) -> str:
    api = f"http://{settings.api_host}:{settings.api_port}"
    metrics = metrics or {}
    warehouse = "embedded chDB" if settings.is_embedded_clickhouse else "ClickHouse server"
    return "\n".join([
        "",
        "Control Room is up.",
        f"  overview  {api}/overview    (live figures: 25 feeds, 7 categories, 34 provinces; needs a key)",
        f"  series    {api}/series?feed=water_level&province=01",
        f"  wall      {api}/wall        (the live national wall in a browser; asks once for a viewer key)",
        f"  indicators {api}/indicators  (136 periodic indicators; /indicators/new_enterprises_m, …/plan, …/ranking)",
        f"  reports   {api}/reports/compliance  (who reported on time; the simulator submits as the agencies)",
        f"  agencies  {api}/agencies  (contracts and today's quality score per body; {api}/wall/agencies on the wall)",
        f"  API docs  {api}/docs",
        f"  Kafka     {bootstrap}{broker_note}",
        f"  metrics   {api}/metrics  (Prometheus text: the API and its sink)",
        *(f"            http://{settings.metrics_host}:{port}/metrics  ({name})" for name, port in metrics.items()),
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
    broker_name, broker_note = "", ""
    if not port_is_free(settings.api_port, settings.api_host):
        raise StartupError(f"API port {settings.api_port} is taken: stop what uses it or set API_PORT")
    if "KAFKA_BOOTSTRAP" not in os.environ:
        kind, why = choose_broker(settings.broker)
        log.info("local broker", broker=kind, why=why)
        kafka_dir = settings.data_dir / "kafka"
        broker = start_broker(kind, settings.broker_port, kafka_dir, settings.data_dir / "broker.log")
        bootstrap = f"127.0.0.1:{settings.broker_port}"
        if kind == "kafka":
            broker_name = f"the local Apache Kafka (data in {kafka_dir})"
            broker_note = (f" (local Apache Kafka {kafka_version()}, KRaft; topics, offsets and unread readings "
                           f"kept in {kafka_dir} across restarts)")
        else:  # its topics were in memory: restarting cannot help
            broker_name = "the embedded broker (Tansu, memory storage)"
            broker_note = f" (embedded Tansu, memory storage: empty at every start; {why})"
        env.update(KAFKA_BOOTSTRAP=bootstrap, KAFKA_IDEMPOTENCE=str(has_idempotence(kind)).lower())
    else:
        bootstrap = settings.kafka_bootstrap
    effective = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    children: list[Child] = []
    status_path = settings.data_dir / STATUS_FILE
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
        _wait_healthy(f"http://{settings.api_host}:{settings.api_port}/healthz", children, 60.0, lambda: stopping)
        if not stopping:
            ports = metrics_ports(settings, env)
            for name, command in CHILDREN:
                own = {"METRICS_PORT": str(ports.get(name, 0))}
                children.append(_spawn(name, [command], env, own))
            if admin_key:  # the agencies' periodic reports, through the API with the local admin key's help
                children.append(_spawn("reports", ["simulate-reports"], env))
            write_status(status_path, children)
            print(banner(settings, bootstrap, broker_note, admin_key, ports), file=sys.stderr, flush=True)
            supervise(children, env, RestartPolicy(), status_path, lambda: stopping, broker, broker_name)
        log.info("stopping")
        return 0
    finally:
        by_name = {c.name: c for c in children}
        _stop([by_name[n] for n in STOP_ORDER if n in by_name])
        with contextlib.suppress(OSError):
            status_path.unlink()
        if broker is not None:
            stop_process(broker, timeout_s=30)  # Apache Kafka closes its logs: the next start needs no recovery


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("up")
    p.set_defaults(func=run_up)



