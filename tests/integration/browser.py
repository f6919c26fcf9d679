"""What the browser tests share (/wall, /docs): the API served for real (uvicorn, in a thread of the test's process)
and Debian's headless Chromium, driven by Playwright without any browser download, cut off from everything but
this machine — an air-gapped operations center has no internet, so a page must not need it.

Chromium is /usr/bin/chromium (`make test` installs it); a test that needs it fails when it is missing, never skips.
Requests to any other host are refused twice: the host resolver maps every name but 127.0.0.1 to "not found"
(`--host-resolver-rules`), and the context's request routing aborts anything not addressed to this machine and
records it, so a test sees the attempt in `Watch.problems` even where it would have failed anyway.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Request, Response, Route, sync_playwright

from api.app import create_app
from controlroom.settings import Settings
from tests.conftest import register_secret

CHROMIUM = Path("/usr/bin/chromium")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"]


@dataclass
class LiveApi:
    url: str
    app: Any
    viewer: str  # a viewer key, created for the test

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.url + path, params=params, headers={"Authorization": f"Bearer {self.viewer}"}, timeout=30)
        r.raise_for_status()
        return r.json()


def open_wall(page: Page, api: LiveApi) -> None:
    """/wall on a fresh profile: it asks for the viewer key once; given, the first snapshot is shown."""
    page.goto(api.url + "/wall", wait_until="load")
    page.wait_for_selector("#key-dialog:not([hidden])", timeout=10_000)  # asks for the key once
    page.fill("#key-input", api.viewer)
    page.click("#key-submit")
    page.wait_for_selector("body[data-generated-at]", timeout=30_000)


@contextmanager
def serve_api(settings: Settings) -> Iterator[LiveApi]:
    """The API served by uvicorn on settings.api_port (in a thread of this process, so the test can seed its chDB)."""
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_config=None,
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the API did not start"
    key, _ = app.state.api.security.keys.create(name="browser test", role="viewer", created_by="test")
    register_secret(key.token)
    try:
        yield LiveApi(f"http://127.0.0.1:{settings.api_port}", app, key.token)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the API did not stop"


def is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or (parts.hostname or "") in LOCAL_HOSTS


@dataclass
class Watch:
    """Everything the pages did wrong: console errors, uncaught exceptions, failed or refused requests, and any
    request to a host other than this machine (refused)."""

    problems: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                self.problems.append(f"console {msg.type}: {msg.text}")

        def failed(req: Request) -> None:
            if is_local(req.url):  # an outside one is reported once, by refuse()
                self.problems.append(f"request failed: {req.method} {req.url} ({req.failure})")

        def response(resp: Response) -> None:
            if resp.status >= 400:
                self.problems.append(f"HTTP {resp.status}: {resp.url}")

        page.on("console", console)
        page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        page.on("requestfailed", failed)
        page.on("response", response)

    def refuse(self, route: Route) -> None:
        self.problems.append(f"request to another host refused: {route.request.method} {route.request.url}")
        route.abort("internetdisconnected")


@dataclass
class Browser:
    context: BrowserContext
    page: Page  # the first tab, watched
    watch: Watch

    def new_page(self) -> Page:
        page = self.context.new_page()
        self.watch.attach(page)
        return page


@contextmanager
def chromium(profile: Path, **options: Any) -> Iterator[Browser]:
    """Headless Chromium with a persistent profile in `profile` (so a stored key survives a second tab), nothing
    reachable but this machine. `options` go to Playwright's launch_persistent_context (viewport, locale…)."""
    assert CHROMIUM.exists(), "Debian chromium is missing: `make test` installs it (apt-get install chromium)"
    watch = Watch()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, **options)
        try:
            context.route(lambda url: not is_local(url), watch.refuse)
            page = context.pages[0] if context.pages else context.new_page()
            watch.attach(page)
            yield Browser(context, page, watch)
        finally:
            context.close()
