"""`controlroom keys create|list|revoke`: manage API keys directly in the warehouse.

With embedded chDB the running API owns the warehouse; then use the admin endpoints instead
(POST/GET/DELETE /admin/keys) with the admin key `make up` printed.
"""

from __future__ import annotations

import argparse

from controlroom.errors import ConfigError
from controlroom.settings import Settings

LOCAL_ADMIN = "local admin (make up)"


def _open(settings: Settings):  # type: ignore[no-untyped-def]
    from controlroom.warehouse import open_exclusive

    return open_exclusive(settings, "manage keys through POST/GET/DELETE /admin/keys with the admin key it printed")


def bootstrap_admin_key(settings: Settings) -> str:
    """For `make up`: revoke the previous local admin key, create a new one, return it (shown once)."""
    from api.keystore import AuditLog, KeyStore
    from controlroom.catalog import default_catalog
    from sinks.migrate import migrate

    wh = _open(settings)
    try:
        migrate(wh, default_catalog())
        keys = KeyStore(wh)
        for old in keys.list():
            if old["name"] == LOCAL_ADMIN and old["active"]:
                keys.revoke(old["key_id"], "make up")
        key, info = keys.create(name=LOCAL_ADMIN, role="admin", created_by="make up")
        AuditLog(wh).record(actor=None, action="key.create", target=key.key_id, after=info, remote="make up")
        return key.token
    finally:
        wh.close()


def run_keys(settings: Settings, args: argparse.Namespace) -> int:
    from api.keystore import AuditLog, KeyStore
    from controlroom.catalog import default_catalog
    from sinks.migrate import migrate

    wh = _open(settings)
    try:
        migrate(wh, default_catalog())  # a fresh warehouse has no key table yet
        keys = KeyStore(wh)
        if args.action == "create":
            if not args.name or not args.role:
                raise ConfigError("keys create needs --name and --role")
            try:
                key, info = keys.create(name=args.name, role=args.role, agency=args.agency or "",
                                        provinces=args.province, created_by="cli")
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
            AuditLog(wh).record(actor=None, action="key.create", target=key.key_id, after=info, remote="cli")
            print(f"created {info['role']} key {info['key_id']} ({info['name']}). The key, shown only now:")
            print(key.token)
        elif args.action == "list":
            for k in keys.list():
                state = "active" if k["active"] else "revoked"
                scope = f" agency={k['agency']}" if k["agency"] else ""
                scope += f" provinces={','.join(k['provinces'])}" if k["provinces"] else ""
                print(f"{k['key_id']}  {k['role']:<8} {state:<8} {k['name']}{scope}")
        else:
            if not args.key_id:
                raise ConfigError("keys revoke needs a KEY_ID (see keys list)")
            revoked = keys.revoke(args.key_id, "cli")
            if revoked is None:
                raise ConfigError(f"no API key {args.key_id!r}")
            AuditLog(wh).record(actor=None, action="key.revoke", target=args.key_id, after=revoked, remote="cli")
            print(f"revoked {args.key_id}")
    finally:
        wh.close()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("keys")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("key_id", nargs="?", help="for revoke")
    p.add_argument("--name", help="who the key is for")
    p.add_argument("--role", choices=["viewer", "operator", "admin", "agency"])
    p.add_argument("--agency", help="agency id (controlroom/data/agencies.yaml), for agency keys")
    p.add_argument("--province", action="append", default=[],
                   help="limit a key to a province: an agency key writes, another key reads, only it (repeatable)")
    p.set_defaults(func=run_keys)
