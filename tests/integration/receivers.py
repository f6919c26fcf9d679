"""Real receivers for notification tests: an HTTP server that records every POST (and can fail on
purpose), and an SMTP server (aiosmtpd) that keeps every message."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from controlroom.broker import free_port

# --- a real HTTP receiver ---------------------------------------------------------------------------------

@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]


@dataclass
class Receiver:
    """Records every POST; answers `fail_first[path] = (n, status)` n times, `always[path]` forever, else 200."""

    port: int = 0
    hits: list[Hit] = field(default_factory=list)
    fail_first: dict[str, tuple[int, int]] = field(default_factory=dict)
    always: dict[str, int] = field(default_factory=dict)
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, hit: Hit) -> int:
        with self.lock:
            self.hits.append(hit)
            if hit.path in self.always:
                return self.always[hit.path]
            n, status = self.fail_first.get(hit.path, (0, 200))
            if n > 0:
                self.fail_first[hit.path] = (n - 1, status)
                return status
            return 200

    def at(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def keys(self) -> list[str]:
        with self.lock:
            return [h.key for h in self.hits]


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            if len(body) < length:  # the sender died mid-request (a SIGKILL test): nothing was delivered
                self.close_connection = True
                return
            status = rec.answer(Hit(self.path, dict(self.headers.items()), body, time.monotonic()))
            if rec.delay_s:
                time.sleep(rec.delay_s)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a notifier killed mid-request resets its connection: expected in the restart test

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    rec.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


# --- a real SMTP server ---------------------------------------------------------------------------------

class Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd hook)
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box, port = Mailbox(), free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
