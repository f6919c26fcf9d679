"""Shared fixtures: a real Tansu broker, settings pointing at it, a chDB warehouse in a temp folder."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlroom.broker import free_port, start_tansu
from controlroom.catalog import Catalog, default_catalog
from controlroom.settings import Settings

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


def terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM a child the test started; SIGKILL when it has not exited within timeout_s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture(scope="session")
def output_dir() -> Path:
    OUTPUT.mkdir(exist_ok=True)
    return OUTPUT


@pytest.fixture()
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh Tansu broker (memory storage) per test: returns its bootstrap address."""
    port = free_port()
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    proc = start_tansu(port, log)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        terminate(proc, 5)


@pytest.fixture()
def make_settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Settings for a test: temp data dir and chDB path; pass overrides such as kafka_bootstrap."""

    def factory(**overrides: object) -> Settings:
        base: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "clickhouse_url": f"chdb://{tmp_path / 'warehouse'}",
            "kafka_idempotence": False,  # Tansu has no InitProducerId
            "log_format": "console",
            # fixtures at fixed dates (2026-01-01) stay inside MAX_PAST_S as the clock moves on; the
            # limit itself has its own tests (unit, and /ingest with max_past_s set)
            "max_past_s": 100 * 365 * 86_400.0,
        }
        base.update(overrides)
        return Settings(**base)  # type: ignore[arg-type]

    return factory
