"""API keys and the audit log, stored in ClickHouse. Only hashes of secrets are ever stored.

Revocation takes effect on the next request: this process drops the key from its cache at once,
and other API processes (server mode) re-read a key at most CACHE_TTL_S after they last did.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from api.scope import scope_database
from controlroom.schema import now_ms
from controlroom.security import ROLES, NewKey, Principal, Role, new_key, parse_token, secret_matches
from controlroom.warehouse import Warehouse, table_in

CACHE_TTL_S = 1.0
KEY_COLUMNS = ("key_id", "name", "role", "agency", "provinces", "created_at", "created_by", "revoked_at")


@dataclass(frozen=True, slots=True)
class _Cached:
    secret_hash: str
    principal: Principal | None  # None: revoked or unknown
    at: float


class KeyStore:
    def __init__(self, warehouse: Warehouse) -> None:
        self.wh = warehouse
        self.table = table_in(warehouse.database, "api_keys")
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    # --- writes ---------------------------------------------------------------------------
    def _write(self, row: dict[str, Any]) -> None:
        table = pa.table({
            "key_id": [row["key_id"]], "name": [row["name"]], "role": [row["role"]],
            "agency": [row["agency"]], "provinces": pa.array([row["provinces"]], pa.list_(pa.string())),
            "secret_hash": [row["secret_hash"]],
            "created_at": pa.array([row["created_at"]], pa.timestamp("ms", tz="UTC")),
            "created_by": [row["created_by"]],
            "revoked_at": pa.array([row["revoked_at"]], pa.timestamp("ms", tz="UTC")),
            "version": pa.array([time.time_ns()], pa.uint64()),
        })
        self.wh.insert_arrow(self.table, table)

    def create(self, *, name: str, role: Role, created_by: str, agency: str = "",
               provinces: list[str] | None = None) -> tuple[NewKey, dict[str, Any]]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        if (role == "agency") != bool(agency):
            raise ValueError("an agency key needs an agency, and only agency keys have one")
        scope_database("x", provinces or [])  # two-digit codes only: a scope's database is named by them
        key = new_key()
        row = {"key_id": key.key_id, "name": name, "role": role, "agency": agency,
               "provinces": sorted(provinces or []), "secret_hash": key.secret_hash,
               "created_at": now_ms(), "created_by": created_by, "revoked_at": None}
        self._write(row)
        return key, _public(row)

    def revoke(self, key_id: str, by: str) -> dict[str, Any] | None:
        row = self._row(key_id)
        if row is None:
            return None
        if row["revoked_at"] is None:
            row["revoked_at"] = now_ms()
            self._write(row)
        with self._lock:
            self._cache.pop(key_id, None)
        return _public(row)

    # --- reads ----------------------------------------------------------------------------
    def _row(self, key_id: str) -> dict[str, Any] | None:
        rows = self.wh.query(
            f"SELECT key_id, name, role, agency, provinces, secret_hash, "
            f"toUnixTimestamp64Milli(created_at) AS created_at, created_by, "
            f"toUnixTimestamp64Milli(revoked_at) AS revoked_at FROM {self.table} FINAL "
            f"WHERE key_id = {{key_id:String}}", {"key_id": key_id})
        if not rows:
            return None
        row = dict(rows[0])
        for k in ("created_at", "revoked_at"):
            row[k] = None if row[k] is None else int(row[k])
        return row

    def list(self) -> list[dict[str, Any]]:
        rows = self.wh.query(
            f"SELECT key_id, name, role, agency, provinces, toUnixTimestamp64Milli(created_at) AS created_at, "
            f"created_by, toUnixTimestamp64Milli(revoked_at) AS revoked_at "
            f"FROM {self.table} FINAL ORDER BY created_at")
        return [_public(dict(r)) for r in rows]

    def authenticate(self, token: str) -> Principal | None:
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        with self._lock:
            cached = self._cache.get(key_id)
        if cached is None or time.monotonic() - cached.at > CACHE_TTL_S:
            row = self._row(key_id)
            principal = None
            if row is not None and row["revoked_at"] is None:
                principal = Principal(row["key_id"], row["name"], row["role"], row["agency"],
                                      frozenset(row["provinces"]))
            cached = _Cached(row["secret_hash"] if row else "", principal, time.monotonic())
            with self._lock:
                self._cache[key_id] = cached
        if cached.principal is None or not secret_matches(secret, cached.secret_hash):
            return None
        return cached.principal


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """What may be shown about a key: never its hash."""
    out = {k: row.get(k) for k in KEY_COLUMNS}
    out["provinces"] = list(out["provinces"] or [])
    out["active"] = out["revoked_at"] is None
    return out


class AuditLog:
    def __init__(self, warehouse: Warehouse) -> None:
        self.wh = warehouse
        self.table = table_in(warehouse.database, "audit_log")

    def record(self, *, actor: Principal | None, action: str, target: str, before: Any = None,
               after: Any = None, remote: str = "") -> None:
        table = pa.table({
            "at": pa.array([now_ms()], pa.timestamp("ms", tz="UTC")),
            "actor_key_id": [actor.key_id if actor else ""], "actor_name": [actor.name if actor else ""],
            "actor_role": [actor.role if actor else ""], "action": [action], "target": [target],
            "before": [orjson.dumps(before).decode() if before is not None else ""],
            "after": [orjson.dumps(after).decode() if after is not None else ""], "remote": [remote],
        })
        self.wh.insert_arrow(self.table, table)

    def read(self, limit: int = 100, action: str | None = None) -> list[dict[str, Any]]:
        where = "WHERE action = {action:String}" if action else ""
        return self.wh.query(
            f"SELECT toUnixTimestamp64Milli(at) AS at, actor_key_id, actor_name, actor_role, action, target, "
            f"before, after, remote FROM {self.table} {where} ORDER BY at DESC LIMIT {{limit:UInt32}}",
            {"limit": limit, **({"action": action} if action else {})})
