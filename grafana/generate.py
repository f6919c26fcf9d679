"""Write every board as JSON (sorted keys) under grafana/dashboards/: `make grafana`, or
`python -m grafana.generate [--check]` (--check: exit 1 when a committed file differs from the code)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from controlroom.catalog import Catalog, default_catalog
from grafana.boards import all_boards
from grafana.layout import DASHBOARDS


def board_json(board: Any) -> dict[str, Any]:
    """The dashboard model as plain JSON data (the SDK's encoder, then a round trip to plain dicts)."""
    data: dict[str, Any] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return data


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate(catalog: Catalog) -> dict[str, str]:
    """file name → JSON text of every board."""
    return {f"{b.file}.json": render(board_json(b.build())) for b in all_boards(catalog)}


def differences(catalog: Catalog, folder: Path = DASHBOARDS) -> list[str]:
    """Files that are missing, differ from the code, or are left over from a board that no longer exists."""
    wanted = generate(catalog)
    out = [name for name, text in wanted.items()
           if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]
    out += [p.name for p in folder.glob("*.json") if p.name not in wanted]
    return sorted(out)


def write(catalog: Catalog, folder: Path = DASHBOARDS) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    wanted = generate(catalog)
    for p in folder.glob("*.json"):
        if p.name not in wanted:
            p.unlink()
    for name, text in wanted.items():
        (folder / name).write_text(text, encoding="utf-8")
    return sorted(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.generate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when grafana/dashboards/ is not up to date")
    args = parser.parse_args(argv)
    catalog = default_catalog()
    if args.check:
        diff = differences(catalog)
        if diff:
            print(f"grafana/dashboards is out of date ({', '.join(diff)}): run `make grafana`", file=sys.stderr)
            return 1
        return 0
    for name in write(catalog):
        print(f"grafana/dashboards/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
