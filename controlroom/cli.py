"""`controlroom` command line: one entry point, sub-commands registered by each part of the system."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from controlroom.errors import ControlRoomError
from controlroom.logs import configure_logging, get_logger
from controlroom.runner import tune_gc
from controlroom.settings import METRICS_PORTS, Settings

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]  # noqa: SLF001 (no public name)

# command → (the module whose register() adds it, the line `controlroom --help` shows). Only the chosen
# command's module is imported: `controlroom --help` loads no part, and one broken part names itself.
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("controlroom.supervisor", "run the whole system on embedded defaults (what `make up` does)"),
    "simulate": ("producers.cli", "publish simulated readings for all 25 feeds"),
    "simulate-reports": ("producers.cli", "submit simulated periodic reports through the API (most on time, some "
                                          "late)"),
    "replay": ("producers.cli", "publish recorded readings from a JSON-lines file"),
    "publish": ("producers.cli", "kcat -P style: publish each stdin line as one message"),
    "worker": ("streams.cli", "run the streams worker (validate, window, dead-letter)"),
    "alerter": ("streams.cli", "run the alerter (rules → alert events on topic `alerts`) until SIGINT/SIGTERM"),
    "backfill": ("sinks.cli", "recompute the 1-minute aggregates (and rollups) of a past range from the stored "
                              "raw readings"),
    "migrate": ("sinks.cli", "apply ClickHouse migrations and refresh the reference tables"),
    "sink": ("sinks.cli", "run the Kafka → ClickHouse sink on its own (server mode) until SIGINT/SIGTERM"),
    "api": ("api.cli", "serve the HTTP API (embedded mode: also runs the sink)"),
    "keys": ("api.keys_cli", "create, list or revoke API keys"),
    "rules": ("api.rules_cli", "alert rules: `rules backtest RULE_FILE --from --to`, the alerts a rule would have "
                               "raised on stored history"),
    "notifier": ("notify.cli", "send alert events to webhook and e-mail subscriptions (signed, retried, recorded "
                               "on alerts.deliveries) until SIGINT/SIGTERM"),
    "grafana": ("grafana.sync", "Grafana boards: push them to a running Grafana"),
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: the chosen command's part registers its real sub-parser; every other command
    is listed with its help line only."""
    parser = argparse.ArgumentParser(
        prog="controlroom",
        description="Control Room: 25 live feeds → Kafka → Faust → ClickHouse → the wall. "
                    "Settings come from the environment (see README).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    if chosen in COMMANDS:
        register: Registrar = importlib.import_module(COMMANDS[chosen][0]).register
        register(sub)
    for name, (_module, text) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=text)
        elif not sub.choices[name].description:
            sub.choices[name].description = text
    return parser


SERVICES = {"worker", "alerter", "notifier", "sink", "api"}  # long-running: see tune_gc


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format, process=args.command)
    if args.command in SERVICES:
        tune_gc()
    if args.command in METRICS_PORTS:  # the API serves GET /metrics itself, on its own port
        from controlroom.metrics import serve

        serve(args.command, settings.metrics_host, settings.metrics_port)
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
