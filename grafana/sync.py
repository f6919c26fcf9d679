"""`controlroom grafana sync`: push the ClickHouse datasource and every board to a running Grafana (grafana-client).

Idempotent by uid: the datasource is read by its uid and updated, or created when Grafana has none; the folder
likewise; each board is posted to /api/dashboards/db with overwrite=true into that folder. Before anything is
written, the ClickHouse plugin must be installed (GET /api/plugins/grafana-clickhouse-datasource/settings).
The datasource comes from grafana/provisioning/datasources/clickhouse.yaml (the same file Grafana provisions
from), its $__env{NAME} filled from this process's environment; the boards are grafana/dashboards/*.json.
The token and the ClickHouse password are never logged nor put in an error message.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from controlroom.errors import ControlRoomError
from controlroom.logs import get_logger
from controlroom.settings import Settings
from grafana.layout import DASHBOARDS, DATASOURCE_UID, PLUGIN_TYPE

log = get_logger("grafana")

DATASOURCE_FILE = Path(__file__).parent / "provisioning" / "datasources" / "clickhouse.yaml"
DASHBOARDS_FILE = Path(__file__).parent / "provisioning" / "dashboards" / "controlroom.yaml"
_ENV = re.compile(r"\$__env\{(\w+)\}")


class GrafanaSyncError(ControlRoomError):
    """Grafana is unreachable, refused the token, lacks the plugin, or refused a request."""


@dataclass
class SyncResult:
    datasource: str = ""  # "created" or "updated"
    folder: str = ""
    dashboards: list[str] = field(default_factory=list)


def _fill_env(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise GrafanaSyncError(f"{DATASOURCE_FILE.name} needs the environment variable {m.group(1)}")
            return env[m.group(1)]
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _fill_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_env(v, env) for v in value]
    return value


def datasource_payload(env: Mapping[str, str]) -> dict[str, Any]:
    """The provisioned datasource as the HTTP API takes it, credentials from `env`."""
    doc = yaml.safe_load(DATASOURCE_FILE.read_text(encoding="utf-8"))
    ds = next(d for d in doc["datasources"] if d["uid"] == DATASOURCE_UID)
    out: dict[str, Any] = _fill_env({k: ds[k] for k in ("name", "uid", "type", "access", "isDefault", "jsonData",
                                                         "secureJsonData") if k in ds}, env)
    if out["type"] != PLUGIN_TYPE:
        raise GrafanaSyncError(f"{DATASOURCE_FILE.name}: datasource {DATASOURCE_UID} is not {PLUGIN_TYPE}")
    return out


def folder_of_boards() -> tuple[str, str]:
    doc = yaml.safe_load(DASHBOARDS_FILE.read_text(encoding="utf-8"))
    provider = doc["providers"][0]
    return str(provider["folderUid"]), str(provider["folder"])


def boards() -> list[dict[str, Any]]:
    files = sorted(DASHBOARDS.glob("*.json"))
    if not files:
        raise GrafanaSyncError(f"no board in {DASHBOARDS}: run `make grafana`")
    return [json.loads(p.read_text(encoding="utf-8")) for p in files]


def _where(url: str) -> str:
    """The URL without any user:password, for messages."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def sync(url: str, token: str, env: Mapping[str, str] | None = None, timeout: float = 10.0) -> SyncResult:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

    env = os.environ if env is None else env
    where = _where(url)
    ds = datasource_payload(env)
    folder_uid, folder_title = folder_of_boards()
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    result = SyncResult()

    def call(what: str, fn: Any, *args: Any, missing_ok: bool = False) -> Any:
        try:
            return fn(*args)
        except GrafanaUnauthorizedError as exc:
            raise GrafanaSyncError(f"Grafana at {where} refused the token (401 Unauthorized): give an API token "
                                   "of a service account with the Admin role (--token or GRAFANA_TOKEN)") from exc
        except GrafanaClientError as exc:
            if missing_ok and exc.status_code == 404:
                return None
            raise GrafanaSyncError(f"Grafana at {where}: {what} failed ({exc.status_code}): {exc.message}") from exc
        except GrafanaException as exc:
            raise GrafanaSyncError(f"Grafana at {where}: {what} failed: {exc.message}") from exc
        except Exception as exc:  # niquests' connection errors: refused, DNS, TLS
            raise GrafanaSyncError(f"cannot reach Grafana at {where}: {type(exc).__name__}") from exc

    plugin = call("plugin check", api.client.GET, f"/plugins/{PLUGIN_TYPE}/settings", missing_ok=True)
    if plugin is None:
        raise GrafanaSyncError(f"Grafana at {where} has no ClickHouse plugin ({PLUGIN_TYPE}): install it "
                               f"(grafana cli plugins install {PLUGIN_TYPE}, or GF_INSTALL_PLUGINS={PLUGIN_TYPE})")

    if call("datasource lookup", api.datasource.get_datasource_by_uid, DATASOURCE_UID, missing_ok=True) is None:
        call("datasource create", api.datasource.create_datasource, ds)
        result.datasource = "created"
    else:
        call("datasource update", api.datasource.update_datasource_by_uid, DATASOURCE_UID, ds)
        result.datasource = "updated"

    if call("folder lookup", api.folder.get_folder, folder_uid, missing_ok=True) is None:
        call("folder create", api.folder.create_folder, folder_title, folder_uid)
        result.folder = "created"
    else:
        result.folder = "exists"

    for board in boards():
        board = {**board, "id": None}  # matched by uid, whatever id this Grafana gave it
        call(f"board {board['uid']}", api.dashboard.update_dashboard, {
            "dashboard": board, "folderUid": folder_uid, "overwrite": True,
            "message": "controlroom grafana sync"})
        result.dashboards.append(board["uid"])
    log.info("grafana synced", url=where, datasource=result.datasource, dashboards=len(result.dashboards))
    return result


def run_sync(settings: Settings, args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("GRAFANA_URL") or settings.grafana_url
    token = args.token or os.environ.get("GRAFANA_TOKEN")
    if not token:
        raise GrafanaSyncError("a Grafana API token is needed: --token or GRAFANA_TOKEN")
    result = sync(url, token)
    print(f"Grafana {_where(url)}: datasource {DATASOURCE_UID} {result.datasource}, folder {result.folder}, "
          f"{len(result.dashboards)} boards: {', '.join(result.dashboards)}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("grafana")
    gsub = p.add_subparsers(dest="grafana_command", metavar="ACTION", required=True)
    s = gsub.add_parser("sync", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--url", help="Grafana's URL (default: GRAFANA_URL, then http://localhost:3000)")
    s.add_argument("--token", help="API token of a service account (default: GRAFANA_TOKEN; prefer the environment: "
                                   "a command-line argument is visible to other users of the machine)")
    s.set_defaults(func=run_sync)
