"""`controlroom` command line: one entry point, sub-commands registered by each part of the system."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from controlroom.errors import ControlRoomError
from controlroom.logs import configure_logging, get_logger
from controlroom.runner import tune_gc
from controlroom.settings import Settings

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _registrars() -> list[Registrar]:
    # Imported here so `controlroom --help` stays fast and one broken part names itself.
    from api.cli import register as api_cli
    from api.keys_cli import register as keys_cli
    from controlroom.supervisor import register as up_cli
    from grafana.sync import register as grafana_cli
    from notify.cli import register as notify_cli
    from producers.cli import register as producers_cli
    from sinks.cli import register as sinks_cli
    from streams.cli import register as streams_cli

    return [up_cli, producers_cli, streams_cli, sinks_cli, api_cli, keys_cli, notify_cli, grafana_cli]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="controlroom",
        description="Control Room: 25 live feeds → Kafka → Faust → ClickHouse → the wall. "
                    "Settings come from the environment (see README).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrars():
        register(sub)
    return parser


SERVICES = {"worker", "alerter", "notifier", "sink", "api"}  # long-running: see tune_gc


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, process=args.command)
    if args.command in SERVICES:
        tune_gc()
    try:
        return int(args.func(settings, args) or 0)
    except ControlRoomError as exc:
        get_logger("controlroom").error("failed", error=str(exc))
        print(f"controlroom {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
