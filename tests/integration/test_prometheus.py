"""/metrics on every service, read back through a real Prometheus (Debian's `prometheus` 2.42, `make prometheus`
installs it): the API (with its embedded sink), the worker, the alerter, the notifier, a standalone sink and the
simulator run as processes on each broker (Tansu, Apache Kafka), Prometheus scrapes them every second, and the
test asks its HTTP query API what a Grafana panel would: readings in per feed equal to what was published, dead
letters, rows stored, consumer lag per partition (seen above 0 while the worker works through a backlog, 0 once it
is done), alert events by state and webhook deliveries. `promtool check metrics` passes on every endpoint's text,
and the Prometheus queries of the Pipeline health board return data.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from controlroom.broker import free_port, stop_process
from controlroom.catalog import Catalog, default_catalog
from controlroom.kafka import all_topics, ensure_topics, make_producer, system_topics
from controlroom.schema import CONTROL_TOPIC, agency_headers
from controlroom.settings import METRICS_PORTS, Settings
from grafana.layout import DASHBOARDS
from tests.integration.pipeline import ROOT, reading, services, wait_for, wait_http
from tests.integration.receivers import http_receiver
from tests.integration.test_notifier import signing_key, sub_put

pytestmark = pytest.mark.integration

PROMETHEUS, PROMTOOL = Path("/usr/bin/prometheus"), Path("/usr/bin/promtool")
WATER, HOTLINE, BAD = 12_000, 8_000, 25  # valid readings of two feeds; malformed messages on a third
BAD_TOPIC = "feeds.traffic_incidents"


def need(tool: Path) -> None:
    if tool.exists():
        return
    problem = f"{tool} is missing: run `make prometheus` (apt-get install prometheus)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {problem}", pytrace=False)
    pytest.skip(problem)


@contextmanager
def prometheus(tmp: Path, targets: Mapping[str, str]) -> Iterator[str]:
    """A real Prometheus on a free port scraping each job's one target every second; yields its base URL."""
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": [address]}]}
                                 for job, address in targets.items()]}
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    subprocess.run([str(PROMTOOL), "check", "config", str(path)], check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([str(PROMETHEUS), f"--config.file={path}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=(tmp / "prometheus.log").open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", proc, tmp / "prometheus.log", 30)
        yield url
    finally:
        stop_process(proc, 10)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus's HTTP API: the result vector."""
    body = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def by(url: str, expr: str, label: str) -> dict[str, float]:
    return {r["metric"].get(label, ""): float(r["value"][1]) for r in query(url, expr)}


def value(url: str, expr: str) -> float | None:
    result = query(url, expr)
    return float(result[0]["value"][1]) if result else None


def backlog(catalog: Catalog) -> list[tuple[str, bytes, bytes]]:
    """Valid water-level and hotline readings over every province (so every partition gets some), all in one
    10-second stretch of one minute (none late), and malformed messages on a third feed (dead letters)."""
    provinces = sorted(catalog.provinces)
    now = int(time.time() * 1000)
    ts = now - now % 60_000 - 30_000  # the middle of the last whole minute
    out = []
    for i in range(WATER):
        p = provinces[i % len(provinces)]
        out.append(("feeds.water_level", p.encode(),
                    reading(f"w{i}", "water_level", p, ts + i % 5000, 100.0 + i % 50, station=f"s{i % 7}")))
    for i in range(HOTLINE):
        p = provinces[i % len(provinces)]
        out.append(("feeds.hotline_calls", p.encode(), reading(f"h{i}", "hotline_calls", p, ts + i % 5000, 3.0,
                                                                   line="113")))
    out += [(BAD_TOPIC, b"01", b"{not json") for _ in range(BAD)]
    return out


async def publish(settings: Settings, messages: list[tuple[str, bytes, bytes]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for topic, key, payload in messages:
            await producer.send(topic, payload, key=key, headers=agency_headers(default_catalog(), topic, key))
        await producer.flush()
    finally:
        await producer.stop()


def promtool_check(url: str) -> str:
    """The endpoint's text, after `promtool check metrics` accepted it (exit 0, no lint problem)."""
    text = httpx.get(url, timeout=5).text
    check = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text.encode(), capture_output=True)
    assert check.returncode == 0 and not check.stderr, f"{url}: {check.stderr.decode()}"
    return text


def board_prometheus_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every Prometheus target of the Pipeline health board, with Grafana's
    $__rate_interval as Grafana would set it for a 1-second scrape."""
    board = json.loads((DASHBOARDS / "pipeline-health.json").read_text(encoding="utf-8"))
    return [(p["title"], t["expr"].replace("$__rate_interval", "1m")) for p in board["panels"]
            for t in p.get("targets", []) if t.get("datasource", {}).get("type") == "prometheus"]


async def test_prometheus_reads_every_service(any_broker: str, make_settings, catalog: Catalog,  # type: ignore[no-untyped-def]
                                              tmp_path: Path) -> None:
    need(PROMETHEUS)
    need(PROMTOOL)
    key = signing_key()
    ports = {name: free_port() for name in ("api", "worker", "alerter", "notifier", "sink", "simulate")}
    # the worker fetches and takes 10 messages at a time, so the backlog lasts a few scrapes and its lag is seen
    # above 0
    settings = make_settings(kafka_bootstrap=any_broker, notify_signing_key=key, api_port=ports["api"],
                             stream_batch_max=10, stream_fetch_max=10, alerter_tick_s=0.5)
    overrides: dict[str, dict[str, object]] = {name: {"metrics_port": port} for name, port in ports.items()}
    # the standalone sink: its own warehouse (chDB: one process per path) and group, so it stores everything too
    overrides["sink"].update(clickhouse_url=f"chdb://{tmp_path / 'sink-warehouse'}", sink_group_id="standalone-sink")
    await ensure_topics(settings, system_topics(catalog))
    with http_receiver() as rx:
        await publish(settings, [(CONTROL_TOPIC, b"", orjson.dumps(sub_put("ops", channel="webhook",
                                                                           target=rx.url("/ops"))))])
        messages = backlog(catalog)
        await publish(settings, messages)  # before the worker starts: it begins with all of it to read
        jobs = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
        with services(settings, tmp_path, "api", "worker", "alerter", "notifier", "sink", overrides=overrides), \
                prometheus(tmp_path, jobs) as prom:
            await asyncio.to_thread(_assert_pipeline_metrics, prom, catalog, rx)
            promtool_check(f"http://127.0.0.1:{ports['api']}/metrics")
            for name in ("worker", "alerter", "notifier", "sink"):
                promtool_check(f"http://{jobs[name]}/metrics")
            for title, expr in board_prometheus_queries():
                assert query(prom, expr), f"board panel {title!r}: no data for {expr}"
            with services(settings, tmp_path, "simulate", overrides=overrides):
                await wait_for(lambda: (value(prom, 'controlroom_simulator_messages_total{job="simulate"}') or 0) > 0,
                               60, "the simulator's messages through Prometheus")
                text = promtool_check(f"http://{jobs['simulate']}/metrics")
                assert "controlroom_simulator_messages_total" in text


def _assert_pipeline_metrics(prom: str, catalog: Catalog, rx: Any) -> None:
    published = WATER + HOTLINE + BAD

    def settle(expr: str, want: float, what: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        got = None
        while time.monotonic() < deadline:
            got = value(prom, expr)
            if got == want:
                return
            time.sleep(0.5)
        raise AssertionError(f"{what}: {expr} = {got}, expected {want}")

    settle("sum(controlroom_readings_in_total)", published, "readings in")
    in_by_feed = by(prom, "sum by (feed) (controlroom_readings_in_total)", "feed")
    assert len(in_by_feed) == len(catalog.feeds)  # a series per feed from the start (0 for the quiet ones)
    assert {f: n for f, n in in_by_feed.items() if n} == {"water_level": WATER, "hotline_calls": HOTLINE,
                                                          "traffic_incidents": BAD}
    assert by(prom, "sum by (feed) (controlroom_dead_letters_total) > 0", "feed") == {"traffic_incidents": BAD}
    assert value(prom, "sum(controlroom_readings_out_total)") == WATER + HOTLINE  # every valid one windowed

    # lag: one series per owned feed partition; above 0 while the backlog was read, 0 once it is done
    lag = 'controlroom_consumer_lag{group="controlroom-streams"}'
    settle(f"count({lag})", len(catalog.feeds) * 4, "worker lag series (25 feeds x 4 partitions)")
    settle(f"sum({lag})", 0, "worker lag after the backlog")
    worst = by(prom, f"max by (topic) (max_over_time({lag}[10m]))", "topic")
    # sampled once a second: a small backlog may be read between two samples, so one of the two feeds is enough
    assert worst["feeds.water_level"] > 0 or worst["feeds.hotline_calls"] > 0, worst
    assert worst["feeds.water_level"] <= WATER and worst["feeds.hotline_calls"] <= HOTLINE, worst

    # both sinks (the API's embedded one and the standalone one) stored every valid reading; their lag is 0
    settle(f'count(controlroom_sink_rows_out_total{{table="readings"}} == {WATER + HOTLINE})', 2,
           "readings stored by both sinks")
    for group in ("controlroom-sink", "standalone-sink"):
        settle(f'count(controlroom_consumer_lag{{group="{group}"}})', len(all_topics(catalog)) * 4, f"{group} series")
        settle(f'sum(controlroom_consumer_lag{{group="{group}"}})', 0, f"{group} lag")
    assert (value(prom, 'sum(controlroom_batch_duration_seconds_count{service="worker"})') or 0) > 0
    assert (value(prom, 'sum(controlroom_batch_duration_seconds_count{service="sink"})') or 0) > 0

    # 25 dead letters of one feed within 5 minutes: the shipped data_quality rule fires, the webhook gets it
    settle('sum(controlroom_alert_events_total{state="firing"}) > bool 0', 1, "a firing alert event", 120)
    settle('sum(controlroom_delivery_attempts_total{channel="webhook",status="delivered"}) > bool 0', 1,
           "a delivered webhook", 120)
    assert rx.at("/ops")
    assert by(prom, "up", "job") == dict.fromkeys(("api", "worker", "alerter", "notifier", "sink"), 1.0) | {
        "simulate": 0.0}


def test_compose_prometheus_scrapes_every_service() -> None:
    """docker-compose.yml's Prometheus: a valid config (promtool) with one job per service that serves /metrics, at
    that service's compose name and metrics port, where the service listens on every interface; a pinned image,
    its data in a volume at /prometheus, a healthcheck on /-/healthy."""
    need(PROMTOOL)
    config_path = ROOT / "grafana" / "prometheus" / "prometheus.yml"
    subprocess.run([str(PROMTOOL), "check", "config", str(config_path)], check=True, capture_output=True)
    scrape = yaml.safe_load(config_path.read_text())["scrape_configs"]
    jobs = {job["job_name"]: (sd["names"], sd["port"]) for job in scrape for sd in job.get("dns_sd_configs", [])}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    by_command = {s["command"][1]: (name, s) for name, s in compose.items()
                  if s.get("command", [""])[0] == "controlroom"}
    everywhere = "0.0.0.0"  # noqa: S104 (what a container's service must listen on for Prometheus to reach it)
    assert jobs.pop("api") == (["api"], Settings().api_port) and compose["api"]["environment"]["API_HOST"] == everywhere
    assert jobs == {cmd: ([by_command[cmd][0]], port) for cmd, port in METRICS_PORTS.items()}
    for cmd in METRICS_PORTS:
        service = by_command[cmd][1]
        assert service["environment"]["METRICS_HOST"] == everywhere and service["expose"] == [str(METRICS_PORTS[cmd])]
    prom = compose["prometheus"]
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", prom["image"])
    assert "/-/healthy" in " ".join(prom["healthcheck"]["test"])
    assert any(v.endswith(":/prometheus") for v in prom["volumes"])
    assert "--storage.tsdb.path=/prometheus" in prom["command"]
    assert "./grafana/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
