"""schemathesis against the running API's own OpenAPI schema: no input may cause a 5xx.

It runs the real `controlroom api` process over loopback (schemathesis keeps an in-process app
alive for the whole test run, and one process can hold only one chDB path), with an admin key so
every operation is reached past authentication. A key's rate limit is raised for the fuzzing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.broker import free_port, wait_for_port
from tests.conftest import register_secret
from tests.integration.pipeline import ROOT, settings_env

pytestmark = pytest.mark.integration


def test_schemathesis_finds_no_server_error(make_settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    settings = make_settings(embedded_sink=False, api_port=port, rate_limit_per_s=10_000.0,
                             rate_limit_burst=10_000.0, query_max_seconds=2.0)
    env = settings_env(settings)
    made = subprocess.run([sys.executable, "-m", "controlroom.cli", "keys", "create", "--name", "fuzz",
                           "--role", "admin"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    token = re.findall(r"cr_[0-9a-f]{12}_\S+", made.stdout)[0]
    register_secret(token)
    api = subprocess.Popen([sys.executable, "-m", "controlroom.cli", "api"], env=env, cwd=ROOT,
                           stdout=(tmp_path / "api.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        assert wait_for_port(port, 30), (tmp_path / "api.log").read_text()
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"http://127.0.0.1:{port}/openapi.json",
             "--checks", "not_a_server_error", "--max-examples", "15", "--seed", "7",
             "--header", f"Authorization: Bearer {token}", "--request-timeout", "10"],
            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    finally:
        api.terminate()
        api.wait(20)
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary + run.stderr[-2000:]
    assert "passed" in summary.lower()
    assert token not in (tmp_path / "api.log").read_text()  # the API never logs the key it was sent
