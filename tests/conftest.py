"""Shared fixtures: real brokers (Tansu; Apache Kafka for the delivery tests), settings pointing at them, a chDB
warehouse in a temp folder."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlroom.broker import apache_kafka_problem, free_port, start_broker, stop_process
from controlroom.catalog import Catalog, default_catalog
from controlroom.settings import Settings
from controlroom.warehouse import Warehouse, open_warehouse

OUTPUT = Path(__file__).parent / "output"
SECRETS: set[str] = set()  # every API key the tests create; no log line may ever contain one


def register_secret(token: str) -> None:
    SECRETS.add(token)
    SECRETS.add(token.split("_", 2)[-1])  # the secret part alone, too


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """After every test: nothing it logged or printed holds a secret it created."""
    caplog.set_level("DEBUG")
    yield
    out, err = capfd.readouterr()
    sys.stdout.write(out)  # hand it back to pytest's report
    sys.stderr.write(err)
    leaked = leaked_secrets(caplog.text + out + err)
    assert not leaked, f"secrets found in log output: {leaked}"


def leaked_secrets(text: str) -> list[str]:
    return sorted(s[:16] + "…" for s in SECRETS if s and s in text)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


APACHE_KAFKA: set[str] = set()  # bootstrap addresses of the Apache Kafka brokers the fixtures started


@functools.cache
def _apache_kafka_problem() -> str | None:
    return apache_kafka_problem()


@pytest.fixture(params=["tansu", "apache_kafka"])
def broker_kind(request: pytest.FixtureRequest) -> str:
    """Each test asking for it runs twice: on Tansu and on Apache Kafka (test ids …[tansu], …[apache_kafka]).
    Returns BROKER's value for it ("tansu", "kafka"). Where Java 17 or Kafka's jars are missing the
    apache_kafka case is skipped with the reason (`make kafka` fetches the jars); with CI=true it fails."""
    if request.param == "tansu":
        return "tansu"
    problem = _apache_kafka_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true, and the tests must run on Apache Kafka: {problem}", pytrace=False)
        pytest.skip(f"Apache Kafka tests skipped: {problem}")
    return "kafka"


def _fresh_broker(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port, folder = free_port(), tmp_path_factory.mktemp(kind)
    proc = start_broker(kind, port, folder / "kafka", folder / "broker.log")
    bootstrap = f"127.0.0.1:{port}"
    if kind == "kafka":
        APACHE_KAFKA.add(bootstrap)
    try:
        yield bootstrap
    finally:
        APACHE_KAFKA.discard(bootstrap)
        stop_process(proc, timeout_s=10)


@pytest.fixture()
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh Tansu broker (memory storage) per test: returns its bootstrap address."""
    yield from _fresh_broker("tansu", tmp_path_factory)


@pytest.fixture()
def any_broker(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh broker per test, on Tansu and on Apache Kafka in turn (see broker_kind): the delivery tests.
    Fresh, because they assert on whole topics and committed offsets; Apache Kafka starts in about 4 s."""
    yield from _fresh_broker(broker_kind, tmp_path_factory)


@pytest.fixture()
def make_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings for a test: temp data dir and chDB path; pass overrides such as kafka_bootstrap. Producers are
    idempotent where the broker supports it: on an Apache Kafka fixture's broker, not on Tansu."""

    def factory(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "clickhouse_url": f"chdb://{tmp_path / 'warehouse'}",
            "kafka_idempotence": overrides.get("kafka_bootstrap") in APACHE_KAFKA,  # Tansu has no InitProducerId
            "log_format": "console",
            "metrics_port": 0,  # no metrics server unless the test asks for one: parallel runs share the default ports
            # fixtures at fixed dates (2026-01-01) stay inside MAX_PAST_S as the clock moves on; the
            # limit itself has its own tests (unit, and /ingest with max_past_s set)
            "max_past_s": 100 * 365 * 86_400.0,
        }
        base.update(overrides)
        return Settings(**base)  # type: ignore[arg-type]

    return factory


@pytest.fixture()
def warehouse(make_settings) -> Iterator[Warehouse]:  # type: ignore[no-untyped-def]
    """The test's chDB warehouse (the path every make_settings() of the test names), closed afterwards even when
    the test fails: chDB opens one path per process, so a warehouse left open fails every later test."""
    wh = open_warehouse(make_settings())
    yield wh
    wh.close()
