"""The command line: `controlroom --help` lists every command without importing any part of the system,
and a command loads only its own part."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from controlroom.cli import COMMANDS, build_parser

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("api", "streams", "sinks", "notify", "producers", "grafana", "faust", "chdb", "grafana_foundation_sdk")


def loaded_after(argv: list[str]) -> tuple[str, set[str]]:
    """What `controlroom <argv>` prints, and which of PARTS it imported (run in a fresh interpreter)."""
    code = ("import sys\nfrom controlroom.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', sorted({{m.split('.')[0] for m in sys.modules}} & {set(PARTS)!r}))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         check=True).stdout
    text, _, loaded = out.rpartition("LOADED ")
    return text, set(ast.literal_eval(loaded))



def test_top_level_help_lists_every_command_and_imports_no_part() -> None:
    text, loaded = loaded_after(["--help"])
    assert loaded == set()
    for name in COMMANDS:  # a long name has its description on the next line
        assert re.search(rf"^    {re.escape(name)}\s", text, re.M), name


@pytest.mark.parametrize(("argv", "part"), [(["worker", "--help"], "streams"), (["keys", "--help"], "api")])
def test_a_command_loads_its_own_part_only(argv: list[str], part: str) -> None:
    text, loaded = loaded_after(argv)
    assert part in loaded
    assert not loaded & {"grafana", "notify", "producers", "grafana_foundation_sdk"}
    assert text.startswith(f"usage: controlroom {argv[0]}")


def test_every_command_is_registered_by_the_module_the_table_names() -> None:
    for name in COMMANDS:
        parser = build_parser([name])
        sub = next(a for a in parser._actions if a.dest == "command")
        assert sub.choices[name].get_default("func") is not None or name == "grafana", name  # type: ignore[union-attr]
