"""`controlroom migrate` and `controlroom sink` (the standalone sink, for server mode)."""

from __future__ import annotations

import argparse

from controlroom.catalog import default_catalog
from controlroom.runner import run_until_signalled
from controlroom.settings import Settings


def run_migrate(settings: Settings) -> int:
    from sinks.migrate import migrate
    from sinks.warehouse import open_warehouse

    wh = open_warehouse(settings)
    try:
        applied = migrate(wh, default_catalog())
    finally:
        wh.close()
    print(f"database {wh.database}: applied " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def run_sink(settings: Settings) -> int:
    from sinks.migrate import migrate
    from sinks.warehouse import open_warehouse
    from sinks.writer import SinkWriter

    if settings.is_embedded_clickhouse:
        print("note: with a chdb:// warehouse the API process normally runs the sink (one process owns the "
              "chDB path); run this only while no API is running, or use a ClickHouse server.")
    catalog = default_catalog()
    wh = open_warehouse(settings)

    try:
        migrate(wh, catalog)
        run_until_signalled(SinkWriter(settings, catalog, wh).run)
    finally:
        wh.close()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("migrate", help="apply ClickHouse migrations and refresh the reference tables")
    p.set_defaults(func=lambda settings, args: run_migrate(settings))
    p = sub.add_parser("sink", help="run the Kafka → ClickHouse sink on its own (server mode) until SIGINT/SIGTERM")
    p.set_defaults(func=lambda settings, args: run_sink(settings))
