"""`controlroom up` (what `make up` runs): fails fast and clearly when a part cannot start; heals a child that dies."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from controlroom import supervisor
from controlroom.broker import free_port, kafka_version, start_apache_kafka, stop_process
from controlroom.catalog import default_catalog
from controlroom.kafka import ensure_topics, make_producer, system_topics
from controlroom.settings import Settings
from tests.conftest import register_secret
from tests.integration.pipeline import ROOT, reading

FEED = "water_level"

pytestmark = pytest.mark.integration


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controlroom.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def base_env(tmp_path: Path, broker: str = "tansu") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    env.update(DATA_DIR=str(tmp_path / "data"), CLICKHOUSE_URL=f"chdb://{tmp_path / 'wh'}",
               API_PORT=str(free_port()), BROKER_PORT=str(free_port()), LOG_FORMAT="console", BROKER=broker)
    return env


@pytest.mark.parametrize("taken", ["API_PORT", "BROKER_PORT"])
def test_up_exits_with_a_clear_message_when_a_port_is_taken(tmp_path: Path, taken: str) -> None:
    env = base_env(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(env[taken])))
        blocker.listen()
        result = run_cli(["up"], env)
    assert result.returncode == 2
    assert f"port {env[taken]} is taken" in result.stderr


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = run_cli(["--help"], base_env(tmp_path))
    assert result.returncode == 0
    for command in ("up", "worker", "simulate", "replay", "publish", "sink", "migrate", "api", "keys"):
        assert command in result.stdout


# --- healing: `controlroom up` brings a killed child back, and nothing is lost -------------------------------------


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc), e.g. the supervisor's children and the broker."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out: set[int] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def poll(check: Callable[[], Any], timeout_s: float, what: str, up: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        assert up is None or up.poll() is None, f"controlroom up exited ({up.returncode}) while waiting for {what}"
        try:
            last = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; last value: {last!r}")


async def published_event_ids(bootstrap: str) -> list[str]:
    """Every reading on the feed topics, read back from the start (the simulator sends one per record). Records are
    counted, not end offsets: Tansu's ListOffsets can answer one short of the last record."""
    tps = [TopicPartition(t, p) for t in default_catalog().topics for p in range(Settings().topic_partitions)]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=5000)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ids: list[str] = []
        quiet = 0
        while quiet < 2:  # publishing has stopped: two empty polls in a row mean the end
            batches = await consumer.getmany(timeout_ms=1000)
            quiet = 0 if batches else quiet + 1
            ids += [json.loads(r.value or b"")["event_id"] for records in batches.values() for r in records]
        return ids
    finally:
        await consumer.stop()


def worker_series(port: int) -> dict[str, Any] | None:
    """The worker's lag series and readings read, from its /metrics; None until it owns partitions."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    lag = [line for line in text.splitlines()
           if line.startswith('controlroom_consumer_lag{group="controlroom-streams"')]
    read = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("controlroom_readings_in_total{"))
    return {"lag": lag, "readings_in": read} if lag else None


def test_up_restarts_a_killed_worker_and_api_with_nothing_lost(tmp_path: Path, broker_kind: str) -> None:
    env = base_env(tmp_path, broker_kind)
    env.update(LOG_FORMAT="json", LOG_LEVEL="info", SIM_RATE="4", STREAMS_REPORT_S="1",
               QUERY_MAX_ROWS="100000")  # every stored event_id in one answer
    data, api = Path(env["DATA_DIR"]), f"http://127.0.0.1:{env['API_PORT']}"
    bootstrap = f"127.0.0.1:{env['BROKER_PORT']}"
    log_path = tmp_path / "up.log"
    started = time.monotonic()
    with log_path.open("wb") as log_file:
        up = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "up"], env=env, cwd=ROOT,
                              stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    spawned: set[int] = set()
    key = ""
    try:
        health = poll(lambda: (r := httpx.get(f"{api}/healthz", timeout=2)).status_code == 200
                      and "supervisor" in r.json() and r.json(), 90, "the system to be up", up)
        assert health["supervisor"] == {"restarts": {n: 0 for n in ("api", "worker", "alerter", "notifier",
                                                                     "simulator", "reports")}}
        key = (data / "admin.key").read_text().strip()
        register_secret(key)
        spawned = descendants(up.pid)
        client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=15)
        # the agencies' periodic reports arrive too (the report simulator, through the API)
        poll(lambda: sum(f["submitted"] for f in client.get("/reports/compliance").json()["forms"]) > 0, 60,
             "simulated reports in /reports/compliance", up)
        # and a unit that missed a deadline raises an alert, from the one alert engine (shipped rule report_overdue:
        # monthly forms are due every month, and the simulator leaves most units missing for the period overdue)
        poll(lambda: [a for a in client.get("/alerts", params={"state": "firing", "limit": 5000}).json()
                      if a["rule_id"] == "report_overdue" and a["rule_type"] == "report_deadline"], 60,
             "a report overdue alert in /alerts", up)

        def q(sql: str) -> int:
            r = client.post("/query", json={"sql": sql})
            r.raise_for_status()
            return int(r.json()["rows"][0][0])

        def status() -> dict[str, Any]:
            return json.loads((data / supervisor.STATUS_FILE).read_text())  # type: ignore[no-any-return]

        # the worker is consuming while the simulator publishes: then kill it
        poll(lambda: any('"streams progress"' in line and '"readings":0,' not in line
                         for line in log_path.read_text().splitlines()), 40, "the worker to absorb readings", up)
        old_pid = status()["children"]["worker"]["pid"]
        assert " worker" in cmdline(old_pid) and alive(old_pid)
        # /metrics while `up` runs: each child's port is in the banner; the worker's shows its lag and readings
        banner = re.findall(r"http://127\.0\.0\.1:(\d+)/metrics  \((\w+)\)", log_path.read_text())
        ports = {name: int(port) for port, name in banner}
        assert sorted(ports) == ["alerter", "notifier", "simulator", "worker"] and len(set(ports.values())) == 4
        worker_metrics = poll(lambda: worker_series(ports["worker"]), 20, "the worker's lag on /metrics", up)
        assert len(worker_metrics["lag"]) == 25 * Settings().topic_partitions and worker_metrics["readings_in"] > 0
        killed_ms = int(time.time() * 1000)
        os.kill(old_pid, signal.SIGKILL)

        # the supervisor brings it back (a new process), and /healthz counts the restart
        poll(lambda: httpx.get(f"{api}/healthz", timeout=2).json()["supervisor"]["restarts"]["worker"] == 1,
             10, "/healthz to count the restart", up)
        new_pid = poll(lambda: status()["children"]["worker"]["running"] and status()["children"]["worker"]["pid"],
                       10, "the worker's new process", up)
        assert new_pid != old_pid and alive(new_pid) and " worker" in cmdline(new_pid)
        poll(lambda: worker_series(ports["worker"]), 30, "the restarted worker's /metrics on the same port", up)

        # the API too (it owns chDB and runs the sink): back on the same port, the warehouse reopened
        api_pid = status()["children"]["api"]["pid"]
        os.kill(api_pid, signal.SIGKILL)
        health = poll(lambda: (r := httpx.get(f"{api}/healthz", timeout=2)).status_code == 200
                      and r.json()["supervisor"]["restarts"]["api"] == 1 and r.json(), 30, "the API to be back", up)
        assert health["supervisor"]["restarts"] == {"api": 1, "worker": 1, "alerter": 0, "notifier": 0,
                                                    "simulator": 0, "reports": 0}
        assert status()["children"]["api"]["pid"] != api_pid

        # aggregates keep flowing: the restarted worker closes windows (each minute, after the lateness allowance)
        poll(lambda: q(f"SELECT count() FROM agg_1m WHERE closed_at > fromUnixTimestamp64Milli({killed_ms})") > 0,
             80, "a window closed by the restarted worker", up)

        # nothing lost: stop publishing, then every reading on the feed topics is one row in `readings`
        sim_pid = status()["children"]["simulator"]["pid"]
        os.kill(sim_pid, signal.SIGSTOP)
        try:
            time.sleep(1.0)  # what the broker holds now is what was published
            published = asyncio.run(published_event_ids(bootstrap))
            assert len(published) > 2146 and len(set(published)) == len(published)  # more than the first round
            poll(lambda: q("SELECT count() FROM readings FINAL") == len(published), 30,
                 f"all {len(published)} published readings in `readings`", up)
            stored = client.post("/query", json={"sql": "SELECT event_id FROM readings FINAL"}).json()["rows"]
            assert sorted(r[0] for r in stored) == sorted(published)
        finally:
            os.kill(sim_pid, signal.SIGCONT)
        client.close()

        # Ctrl-C: everything stops cleanly, nothing restarted on the way down
        spawned |= descendants(up.pid)
        assert {new_pid, status()["children"]["api"]["pid"]} <= spawned and len(spawned) >= 6  # 5 children, broker
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
        assert not [p for p in spawned if alive(p)], "a child outlived the supervisor"
        assert not (data / supervisor.STATUS_FILE).exists()
    finally:
        if up.poll() is None:  # a failure above: stop it the normal way, and leave nothing behind in any case
            spawned |= descendants(up.pid)  # now, before they are orphaned: restarted children too
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait()
        for pid in spawned:
            if alive(pid) and any(name in cmdline(pid) for name in ("controlroom", "tansu", "kafka.Kafka")):
                os.kill(pid, signal.SIGKILL)
        text = log_path.read_text(errors="replace")
        print(f"controlroom up ran {time.monotonic() - started:.0f} s; its log (tail):\n"
              + "\n".join(text.splitlines()[-40:]).replace(key or "\0", "<admin key>"))
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    restarts = [e for e in events if e.get("event") == "child exited unexpectedly; restarting"]
    assert [(e["child"], e["exit_code"], e["signal"], e["attempt"], e["delay_s"], e["pid"]) for e in restarts] == [
        ("worker", -9, "SIGKILL", 1, 0.5, old_pid), ("api", -9, "SIGKILL", 1, 0.5, api_pid)]
    assert [e["pid"] for e in events if e.get("event") == "child restarted"][0] == new_pid


@pytest.mark.parametrize("broker_kind", ["apache_kafka"], indirect=True)
def test_up_picks_apache_kafka_and_finds_readings_published_while_it_was_down(tmp_path: Path,
                                                                               broker_kind: str) -> None:
    """BROKER=auto with Java here: `up` runs Apache Kafka on data/kafka, so readings published while the system was
    down (on the broker of an earlier run, now stopped) are still there, and get stored."""
    env = base_env(tmp_path, "auto")
    env.update(LOG_FORMAT="json", QUERY_MAX_ROWS="100000")
    data, port = Path(env["DATA_DIR"]), int(env["BROKER_PORT"])
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{port}", data_dir=data)
    now = int(time.time() * 1000)
    ids = [f"kept-{i}" for i in range(50)]

    async def publish_while_down() -> None:
        await ensure_topics(settings, system_topics(default_catalog()))
        producer = make_producer(settings)  # idempotent, acks=all
        await producer.start()
        try:
            for i, eid in enumerate(ids):
                await producer.send(f"feeds.{FEED}", reading(eid, FEED, "01", now - 1000 + i, 100 + i, station="s1"),
                                    key=b"01", headers=[("agency", b"hydromet")])
            await producer.flush()
        finally:
            await producer.stop()

    broker = start_apache_kafka(port, data / "kafka", tmp_path / "earlier-broker.log")
    try:
        asyncio.run(publish_while_down())
    finally:
        stop_process(broker)
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log_file:
        up = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "up"], env=env, cwd=ROOT,
                              stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    key = ""
    try:
        api = f"http://127.0.0.1:{env['API_PORT']}"
        poll(lambda: httpx.get(f"{api}/healthz", timeout=2).status_code == 200, 90, "the system to be up", up)
        key = (data / "admin.key").read_text().strip()
        register_secret(key)
        client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=15)

        def kept() -> list[str]:
            r = client.post("/query", json={"sql": "SELECT event_id FROM readings FINAL WHERE event_id LIKE 'kept-%'"})
            r.raise_for_status()
            return sorted(row[0] for row in r.json()["rows"])

        assert poll(lambda: kept() == sorted(ids) and kept(), 60, "the readings published while down", up)
        client.close()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            up.wait(timeout=90)
    text = log_path.read_text(errors="replace").replace(key or "\0", "<admin key>")
    assert up.returncode == 0, text[-3000:]
    assert f"Kafka     127.0.0.1:{port} (local Apache Kafka {kafka_version()}, KRaft" in text
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert [(e["broker"], e["why"]) for e in events if e.get("event") == "local broker"] == [
        ("kafka", "BROKER=auto: Java and Kafka's jars here")]
