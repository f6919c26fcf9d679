"""`controlroom api`: serve the HTTP API (and, with chDB, the embedded sink) with uvicorn."""

from __future__ import annotations

import argparse

from controlroom.broker import port_is_free
from controlroom.errors import StartupError
from controlroom.settings import Settings


def run(settings: Settings, _args: argparse.Namespace) -> int:
    # Check first: uvicorn would open the warehouse, start the sink, and only then fail to bind.
    if not port_is_free(settings.api_port, settings.api_host):
        # main() prints it and exits 2, like the broker's own port check
        raise StartupError(f"port {settings.api_port} is taken: stop what uses it or set API_PORT")
    import uvicorn  # imported here so `controlroom --help` stays fast

    from api.app import create_app
    from controlroom.native_memory import tune_malloc

    tune_malloc()  # before uvicorn's and chDB's threads exist: their malloc arenas follow it
    uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_config=None,
                timeout_graceful_shutdown=5)  # open SSE streams (/wall, /alerts) must not hold up the shutdown
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("api", description="Serve the Control Room API on API_HOST:API_PORT. With a chdb:// "
                                               "CLICKHOUSE_URL this process owns the warehouse and runs the sink too.")
    parser.set_defaults(func=run)
