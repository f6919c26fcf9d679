"""A command line tool asking the running API to do its work: while `make up` runs, the API owns the embedded
chDB warehouse (one process per path), so `controlroom backfill --api` and `controlroom rules backtest --api`
send their request there, with a key from CONTROLROOM_API_KEY or DATA_DIR/admin.key (make up writes it)."""

from __future__ import annotations

import os
from typing import Any

from controlroom.errors import ConfigError
from controlroom.settings import Settings


def post_to_api(settings: Settings, api: str, path: str, body: dict[str, Any], what: str,
                timeout: float = 3600.0) -> str:
    """POST `body` to `path` of the API (`api`: its URL, or anything else for http://API_HOST:API_PORT);
    the answer's text. ConfigError, saying `what` failed, on no key, no answer or an error status."""
    import httpx

    key = api_key(settings, what)
    url = api_url(settings, api)
    try:
        resp = httpx.post(f"{url.rstrip('/')}{path}", json=body, headers={"Authorization": f"Bearer {key}"},
                          timeout=timeout)
    except httpx.HTTPError as exc:
        raise ConfigError(f"{what}: the API at {url} did not answer: {exc}") from exc
    if resp.status_code != 200:
        raise ConfigError(f"{what}: the API answered {resp.status_code}: {resp.text[:500]}")
    return resp.text


def api_key(settings: Settings, what: str) -> str:
    """The key to call the API with: CONTROLROOM_API_KEY, else the one `make up` wrote (DATA_DIR/admin.key)."""
    return os.environ.get("CONTROLROOM_API_KEY") or _read_key(settings, what)


def api_url(settings: Settings, api: str = "") -> str:
    """`api` when it is a URL, else the local API (http://API_HOST:API_PORT)."""
    return api if api.startswith("http") else f"http://{settings.api_host}:{settings.api_port}"


def _read_key(settings: Settings, what: str) -> str:
    path = settings.data_dir / "admin.key"
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{what} --api needs an API key: set CONTROLROOM_API_KEY or keep {path} "
                          "(make up writes it)") from exc
