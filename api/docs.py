"""GET /docs (Swagger UI) and GET /redoc, served with no internet: an air-gapped operations center has none.

FastAPI's own pages load Swagger UI and ReDoc from a CDN (and a favicon from fastapi.tiangolo.com, Google Fonts for
ReDoc). Here the same pages (FastAPI's get_swagger_ui_html / get_redoc_html) point at files served by this API
under /docs/static/, read from the `fastapi-offline` package, which ships swagger-ui-dist's bundle and stylesheet
and ReDoc's standalone bundle (pinned in pyproject.toml; a wheel mirror carries them like any other dependency).
Only these files are served (an allow-list, as /wall/static does), and Swagger UI's online validator badge is off
(it would call validator.swagger.io for every spec not on localhost).

Each page carries a Content-Security-Policy that allows nothing from elsewhere: scripts, styles, images and
fetches from this origin only (Swagger UI's one inline start-up script by its hash). So a page that tried to reach
the internet would be refused by the browser, not only fail on a network without one. One thing does try: ReDoc's
bundle always shows Redocly's logo from its CDN under the menu (and hides it when it does not load); the policy
refuses it before any request leaves, and the browser notes that on its console.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

from fastapi import APIRouter, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

router = APIRouter(include_in_schema=False)

ASSETS_PACKAGE = "fastapi_offline"  # its static/ folder: swagger-ui-dist 5.x and redoc 2.x bundles
STATIC_PATH = "/docs/static"
STATIC = {  # the only files served under /docs/static
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
}
FAVICON = "/wall/static/favicon.svg"  # the project's own icon (served without a key)
ASSET_CACHE = "public, max-age=86400"  # versioned with the package; the pages themselves are never cached
SWAGGER_PARAMETERS = {"validatorUrl": None}  # no validator badge: it would call validator.swagger.io
# blob: workers: ReDoc's search index runs in a worker it builds from a blob; data: images: both bundles' icons
PAGE_CSP = ("default-src 'none'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@functools.cache
def asset(name: str) -> bytes:
    return (resources.files(ASSETS_PACKAGE) / "static" / name).read_bytes()


def page_csp(html: str) -> str:
    """The page's policy: its inline scripts (Swagger UI's start-up call) allowed by their SHA-256, nothing else."""
    hashes = "".join(f" 'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                     for s in _INLINE_SCRIPT.findall(html))
    return PAGE_CSP.format(hashes=hashes)


def _page(page: HTMLResponse) -> HTMLResponse:
    html = bytes(page.body).decode()
    return HTMLResponse(html, headers={"Content-Security-Policy": page_csp(html)})


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return _page(get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} - Swagger UI",
        swagger_js_url=f"{root}{STATIC_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{STATIC_PATH}/swagger-ui.css", swagger_favicon_url=f"{root}{FAVICON}",
        swagger_ui_parameters=SWAGGER_PARAMETERS))


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return _page(get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} - ReDoc",
        redoc_js_url=f"{root}{STATIC_PATH}/redoc.standalone.js", redoc_favicon_url=f"{root}{FAVICON}",
        with_google_fonts=False))


@router.get(STATIC_PATH + "/{name}")
async def docs_static(name: str) -> Response:
    if name not in STATIC:
        raise HTTPException(404, "no such file")
    return Response(asset(name), media_type=STATIC[name], headers={"Cache-Control": ASSET_CACHE})
