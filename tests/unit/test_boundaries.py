"""Package boundaries, read from the source (ast, nothing imported).

A service package (api, streams, notify, sinks, producers, grafana) imports only the shared package
(`controlroom`) and itself: code two services need lives in `controlroom/` (the warehouse adapter, the
catalog's definitions, the alert domain in `controlroom/alerts/`). The shared package imports no service,
except to start them (`controlroom/cli.py` names each command's module in a table and imports it
by name, only when that command runs). Every exception is listed below with its reason, and
a listed exception that no longer occurs fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("api", "streams", "notify", "sinks", "producers", "grafana")
SHARED = "controlroom"

# (importing file, imported module) → why it is allowed
EXCEPTIONS: dict[tuple[str, str], str] = {
    # the API owns embedded chDB, so it migrates it and runs the sink inside its own process
    ("api/app.py", "sinks.migrate"): "the API starts the embedded sink",
    ("api/app.py", "sinks.writer"): "the API starts the embedded sink",
    ("api/keys_cli.py", "sinks.migrate"): "`controlroom keys` on a fresh warehouse creates the key table first",
    # POST /admin/backfill: while the API owns embedded chDB, only it can recompute a range (the same
    # code as `controlroom backfill`)
    ("api/admin.py", "sinks.backfill"): "the API runs the sink's backfill on the warehouse it owns",
    # `make up` makes the local admin key before the API opens chDB (then only the API may)
    ("controlroom/supervisor.py", "api.keys_cli"): "the supervisor bootstraps the first admin key",
}


def imports(path: Path) -> Iterator[str]:
    """Every absolute module name `path` imports, at top level or inside a function."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def crossings() -> set[tuple[str, str]]:
    """(file, module) for every import of a service package from outside that package."""
    found = set()
    for package in (*SERVICES, SHARED):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for module in imports(path):
                top = module.split(".")[0]
                if top in SERVICES and top != package:
                    found.add((rel, module))
    return found


def test_service_packages_import_only_the_shared_package_and_themselves() -> None:
    unexpected = sorted(crossings() - EXCEPTIONS.keys())
    assert unexpected == [], "move the shared code to controlroom/ (or list a justified exception): " + \
        ", ".join(f"{file} imports {module}" for file, module in unexpected)


def test_every_listed_exception_still_occurs() -> None:
    assert sorted(EXCEPTIONS.keys() - crossings()) == []


def test_the_scan_sees_every_package() -> None:
    for package in (*SERVICES, SHARED):
        assert (ROOT / package / "__init__.py").is_file(), package
    assert ("api/app.py", "sinks.writer") in crossings()  # lazy and top-level imports are both seen
