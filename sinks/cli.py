"""`controlroom migrate` and `controlroom sink` (the standalone sink, for server mode)."""

from __future__ import annotations

import argparse
import asyncio
import signal

from controlroom.catalog import default_catalog
from controlroom.settings import Settings


def run_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.migrate import migrate
    from sinks.warehouse import open_warehouse

    wh = open_warehouse(settings)
    try:
        applied = migrate(wh, default_catalog())
    finally:
        wh.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def run_sink(settings: Settings, args: argparse.Namespace) -> int:
    from sinks.migrate import migrate
    from sinks.warehouse import open_warehouse
    from sinks.writer import SinkWriter

    if settings.sink_in_api:
        print("note: with chdb:// the API process runs the sink (one process owns the warehouse); "
              "run this only when the API is not running, or set EMBEDDED_SINK=false for the API.")
    catalog = default_catalog()
    wh = open_warehouse(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await SinkWriter(settings, catalog, wh).run(stop)

    try:
        migrate(wh, catalog)
        asyncio.run(main())
    finally:
        wh.close()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sub.add_parser("migrate", help="apply ClickHouse migrations and refresh reference tables").set_defaults(
        func=run_migrate)
    sub.add_parser("sink", help="run the Kafka → ClickHouse sink on its own (server mode)").set_defaults(
        func=run_sink)
