"""The supervisor's restart policy and status file, with plain numbers: no processes, no clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom import supervisor
from controlroom.supervisor import (
    RESTART_BASE_DELAY_S,
    RESTART_MAX,
    RESTART_MAX_DELAY_S,
    RESTART_WINDOW_S,
    Child,
    RestartPolicy,
    describe_exit,
    supervisor_health,
    write_status,
)

POLICY = RestartPolicy(base_delay_s=0.5, max_delay_s=8.0, max_restarts=5, window_s=60.0)


def crash_loop(policy: RestartPolicy, exits_at: list[float]) -> list[tuple[str, int, float]]:
    """Feed a child's exit times through the policy, as the supervisor does."""
    history: tuple[float, ...] = ()
    out = []
    for now in exits_at:
        d = policy.decide(history, now)
        out.append((d.action, d.attempt, d.delay_s))
        history = d.history
    return out


def test_the_shipped_numbers() -> None:
    assert (RESTART_BASE_DELAY_S, RESTART_MAX_DELAY_S, RESTART_MAX, RESTART_WINDOW_S) == (0.5, 10.0, 5, 60.0)
    assert RestartPolicy() == RestartPolicy(0.5, 10.0, 5, 60.0)
    # a child dying at once reaches the cap well inside the window: 0.5 + 1 + 2 + 4 + 8 s of waiting
    assert sum(d for _a, _n, d in crash_loop(RestartPolicy(), [0.0] * 5)) == 15.5 < RESTART_WINDOW_S


def test_backoff_doubles_then_gives_up_after_the_fifth_restart_in_the_window() -> None:
    assert crash_loop(POLICY, [0.0, 1.0, 3.0, 6.0, 11.0, 20.0]) == [
        ("restart", 1, 0.5), ("restart", 2, 1.0), ("restart", 3, 2.0), ("restart", 4, 4.0), ("restart", 5, 8.0),
        ("give_up", 5, 0.0)]


def test_delay_is_capped() -> None:
    many = RestartPolicy(base_delay_s=0.5, max_delay_s=3.0, max_restarts=10, window_s=60.0)
    assert [d for _a, _n, d in crash_loop(many, [float(i) for i in range(8)])] == [0.5, 1, 2, 3, 3, 3, 3, 3]


def test_restarts_older_than_the_window_are_forgotten() -> None:
    # four restarts early on, then quiet for a minute: the next crash starts over at the shortest delay
    assert crash_loop(POLICY, [0.0, 1.0, 2.0, 3.0, 70.0]) == [
        ("restart", 1, 0.5), ("restart", 2, 1.0), ("restart", 3, 2.0), ("restart", 4, 4.0), ("restart", 1, 0.5)]
    d = POLICY.decide((0.0, 1.0, 2.0, 3.0), 70.0)
    assert d.history == (70.0,)  # the memory stays bounded by the window
    # a restart exactly one window ago no longer counts; one a moment younger still does
    assert POLICY.decide((0.0, 10.0, 20.0, 30.0, 40.0), 60.0).action == "restart"
    assert POLICY.decide((0.5, 10.0, 20.0, 30.0, 40.0), 60.0).action == "give_up"


def test_an_exit_while_stopping_is_not_restarted() -> None:
    d = POLICY.decide((), 5.0, stopping=True)
    assert d.action == "ignore"
    assert POLICY.decide((1.0, 2.0, 3.0, 4.0, 5.0), 6.0, stopping=True).action == "ignore"  # nor is it a failure


@pytest.mark.parametrize(("code", "words"), [
    (0, "exit code 0"), (1, "exit code 1"), (2, "exit code 2"),
    (-signal.SIGKILL, "signal SIGKILL"), (-signal.SIGTERM, "signal SIGTERM"), (-200, "signal 200")])
def test_describe_exit(code: int, words: str) -> None:
    assert describe_exit(code) == words


def test_status_file_is_shown_by_healthz_only_to_the_supervisors_own_children(tmp_path: Path) -> None:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    children = [Child("api", ["api"], done), Child("worker", ["worker"], done, restarts=2, last_exit=-9)]
    path = tmp_path / supervisor.STATUS_FILE
    write_status(path, children)
    status = json.loads(path.read_text())
    assert status["pid"] == os.getpid() and status["restarts"] == {"api": 0, "worker": 2}
    assert status["children"]["worker"] == {"pid": done.pid, "running": False, "restarts": 2, "last_exit": -9}
    assert [p.name for p in tmp_path.iterdir()] == [supervisor.STATUS_FILE]  # the temporary file was renamed

    # this test process is not a child of "the supervisor" that wrote it (itself): ignored, like a stale file
    assert supervisor_health(tmp_path) is None
    status["pid"] = os.getppid()
    path.write_text(json.dumps(status))
    assert supervisor_health(tmp_path) == {"restarts": {"api": 0, "worker": 2}}
    path.write_text("{not json")
    assert supervisor_health(tmp_path) is None
    path.unlink()
    assert supervisor_health(tmp_path) is None


def test_supervise_restarts_a_dying_child_then_names_it_when_it_keeps_dying(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    """The loop around the policy, with a child that exits with code 3 at once (a real short-lived process)."""
    spawned: list[list[str]] = []

    def popen(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        spawned.append(args)
        return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])

    monkeypatch.setattr(supervisor, "_popen", popen)
    monkeypatch.setattr(supervisor, "POLL_S", 0.01)
    fast = RestartPolicy(base_delay_s=0.01, max_delay_s=0.04, max_restarts=3, window_s=60.0)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        children = [Child("api", ["api"], sleeper), supervisor._spawn("worker", ["worker"], {})]
        with pytest.raises(supervisor.ChildFailed) as failed:
            supervisor.supervise(children, {}, fast, tmp_path / "status.json", lambda: False)
        assert str(failed.value) == "worker exited (exit code 3) after 3 restarts within 60 s; stopping everything"
        assert spawned == [["worker"]] * 4  # the first start and three restarts
        status = json.loads((tmp_path / "status.json").read_text())
        assert status["restarts"] == {"api": 0, "worker": 3}
        assert status["children"]["worker"]["last_exit"] == 3
        logged = "".join(capfd.readouterr())
        assert logged.count("child exited unexpectedly; restarting") == 3 and "child keeps failing" in logged
    finally:
        sleeper.kill()
        sleeper.wait()


def test_supervise_does_not_restart_a_child_that_exits_while_stopping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "_popen", lambda args, env: pytest.fail("restarted while stopping"))
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    calls = iter([False, True])  # the loop starts, then a signal arrives before it looks at the dead child
    supervisor.supervise([Child("worker", ["worker"], done)], {}, POLICY, tmp_path / "s.json",
                         lambda: next(calls, True))
    assert not (tmp_path / "s.json").exists()
