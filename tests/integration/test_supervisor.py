"""`controlroom up` (what `make up` runs) fails fast and clearly when a part cannot start."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.broker import free_port
from tests.integration.pipeline import ROOT

pytestmark = pytest.mark.integration


def run_cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controlroom.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def base_env(tmp_path: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
    env.update(DATA_DIR=str(tmp_path / "data"), CLICKHOUSE_URL=f"chdb://{tmp_path / 'wh'}",
               API_PORT=str(free_port()), BROKER_PORT=str(free_port()), LOG_FORMAT="console")
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
