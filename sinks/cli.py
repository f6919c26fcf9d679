"""`controlroom migrate` and `controlroom sink` (the standalone sink, for server mode)."""

from __future__ import annotations

import argparse
import asyncio

import orjson

from controlroom.catalog import default_catalog
from controlroom.runner import run_until_signalled
from controlroom.settings import Settings


def run_migrate(settings: Settings) -> int:
    from controlroom.warehouse import open_warehouse
    from sinks.migrate import migrate
    from sinks.retention import apply_retention

    wh = open_warehouse(settings)
    try:
        applied = migrate(wh, default_catalog())
        retention = apply_retention(wh, settings)
    finally:
        wh.close()
    print(f"database {wh.database}: applied " + (", ".join(applied) if applied else "nothing (up to date)"))
    for table, ttl in retention.items():
        print(f"  {table}: TTL {ttl or 'removed (kept for ever)'}")
    return 0


def run_sink(settings: Settings) -> int:
    from controlroom.native_memory import trim_periodically, tune_malloc
    from controlroom.warehouse import open_warehouse, release_engine_memory
    from sinks.migrate import migrate
    from sinks.writer import SinkWriter

    if settings.is_embedded_clickhouse:
        print("note: with a chdb:// warehouse the API process normally runs the sink (one process owns the "
              "chDB path); run this only while no API is running, or use a ClickHouse server.")
    tune_malloc()  # as the API does (controlroom/native_memory.py): before chDB's threads make their arenas
    catalog = default_catalog()
    wh = open_warehouse(settings)

    async def sink(stop: asyncio.Event) -> None:
        trim = asyncio.create_task(trim_periodically(stop, lambda: release_engine_memory(wh)), name="malloc-trim")
        try:
            await SinkWriter(settings, catalog, wh).run(stop)
        finally:
            stop.set()
            await trim

    try:
        migrate(wh, catalog)
        run_until_signalled(sink)
    finally:
        wh.close()
    return 0


def run_backfill(settings: Settings, args: argparse.Namespace) -> int:
    """Recompute agg_1m (and its rollups) for [--from, --to) from the stored readings. With a running API that
    owns the embedded warehouse (make up), the API does it: POST /admin/backfill with an admin key."""
    from controlroom.schema import parse_instant
    from controlroom.warehouse import open_exclusive
    from sinks.backfill import BackfillResult, backfill, chunks

    lo, hi = parse_instant(args.from_, "--from"), parse_instant(args.to, "--to")
    days = len(chunks(lo, hi, settings.window_s))  # checks the range before anything runs
    if args.api:
        return _backfill_through_api(settings, args)
    wh = open_exclusive(settings, "run `controlroom backfill --api` (it asks the API to do it)")
    try:
        from tqdm import tqdm

        with tqdm(total=days, unit="day", desc="backfill") as bar:
            def progress(done: int, total: int, so_far: BackfillResult) -> None:
                bar.update(1)
                bar.set_postfix(windows=so_far.windows, readings=so_far.readings)

            result = backfill(wh, lo, hi, settings.window_s, progress)
    finally:
        wh.close()
    print(orjson.dumps(result.as_dict()).decode())
    return 0


def _backfill_through_api(settings: Settings, args: argparse.Namespace) -> int:
    from controlroom.api_call import post_to_api

    print(post_to_api(settings, args.api, "/admin/backfill", {"from": args.from_, "to": args.to}, "backfill"))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("backfill")
    p.add_argument("--from", dest="from_", required=True, help="start, e.g. 2026-11-01 or 2026-11-01T06:00:00+07:00")
    p.add_argument("--to", required=True, help="end (exclusive), same forms")
    p.add_argument("--api", nargs="?", const="local", default=None,
                   help="ask the running API to do it (needed while `make up` owns the embedded warehouse); "
                        "optionally its URL, default http://API_HOST:API_PORT")
    p.set_defaults(func=run_backfill)
    p = sub.add_parser("migrate")
    p.set_defaults(func=lambda settings, args: run_migrate(settings))
    p = sub.add_parser("sink")
    p.set_defaults(func=lambda settings, args: run_sink(settings))
