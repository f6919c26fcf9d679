"""GET /docs and GET /redoc work on a network with no internet: headless Chromium, every request to another host
refused (tests/integration/browser.py), renders every operation of the API from files the API serves itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.docs import STATIC, STATIC_PATH
from controlroom.broker import free_port
from tests.integration.browser import LiveApi, chromium, serve_api

pytestmark = pytest.mark.integration

METHODS = {"get", "post", "put", "delete", "patch"}
KNOWN = {("GET", "/overview"), ("POST", "/ingest"), ("POST", "/query"), ("GET", "/alerts")}
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture()
def live_api(make_settings) -> Iterator[LiveApi]:  # type: ignore[no-untyped-def]
    with serve_api(make_settings(embedded_sink=False, api_port=free_port())) as api:
        yield api


def operations(api: LiveApi) -> set[tuple[str, str]]:
    spec = httpx.get(api.url + "/openapi.json", timeout=30).json()
    return {(m.upper(), path) for path, item in spec["paths"].items() for m in item if m in METHODS}


def test_docs_pages_name_only_this_server(live_api: LiveApi) -> None:
    for page in ("/docs", "/redoc"):
        r = httpx.get(live_api.url + page)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        urls = re.findall(r'(?:src|href|spec-url)="([^"]*)"', r.text)
        assert urls and all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        assert "cdn.jsdelivr.net" not in r.text and "fonts.googleapis.com" not in r.text
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "http" not in csp
    for name, media_type in STATIC.items():
        r = httpx.get(f"{live_api.url}{STATIC_PATH}/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == media_type and len(r.content) > 100_000
        assert "max-age" in r.headers["cache-control"]
    assert httpx.get(f"{live_api.url}{STATIC_PATH}/__init__.py").status_code == 404
    assert httpx.get(f"{live_api.url}{STATIC_PATH}/..%2Fcore.py").status_code == 404
    assert operations(live_api) >= KNOWN


def test_docs_and_redoc_in_chromium_with_no_internet(live_api: LiveApi, tmp_path: Path) -> None:
    expected = operations(live_api)
    assert expected >= KNOWN
    with chromium(tmp_path / "chromium-profile", viewport={"width": 1440, "height": 900}) as browser:
        page, watch = browser.page, browser.watch

        # Swagger UI: one opblock per operation, its method and path as attributes and text
        page.goto(live_api.url + "/docs", wait_until="load")
        page.wait_for_selector(".opblock .opblock-summary-path", timeout=30_000)
        shown = set(map(tuple, page.evaluate("""() => [...document.querySelectorAll('.opblock')].map(b => [
            b.querySelector('.opblock-summary-method').textContent.trim(),
            b.querySelector('.opblock-summary-path').getAttribute('data-path')])""")))
        assert shown == expected, (sorted(expected - shown), sorted(shown - expected))
        assert page.text_content(".info .title") is not None and "Control Room API" in page.text_content(".info")
        page.screenshot(path=str(tmp_path / "docs.png"))

        # ReDoc: every operation in its side menu and in the page
        page.goto(live_api.url + "/redoc", wait_until="load")
        page.wait_for_selector("li[data-item-id^='tag/'], li[data-item-id^='operation/']", timeout=30_000)
        page.wait_for_selector("h2", timeout=30_000)
        text = page.text_content("body") or ""
        summaries = {op["summary"] for path in httpx.get(live_api.url + "/openapi.json").json()["paths"].values()
                     for m, op in path.items() if m in METHODS and op.get("summary")}
        missing = sorted(s for s in summaries if s not in text)
        assert not missing, missing
        assert "/overview" in text and "/ingest" in text
        page.screenshot(path=str(tmp_path / "redoc.png"))

        # nothing failed and nothing tried to leave this machine, except ReDoc's "API docs by Redocly" logo, which
        # its bundle always loads from its CDN (and hides when it does not load): the page's policy refuses it
        # before any request is made, so the browser reports it once on the console
        attribution = [p for p in watch.problems if REDOC_LOGO in p and "Content Security Policy" in p]
        assert len(attribution) == 1, watch.problems
        assert [p for p in watch.problems if p not in attribution] == []
