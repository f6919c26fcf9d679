"""`controlroom worker`: run the streams worker."""

from __future__ import annotations

import argparse
import asyncio
import logging

from controlroom.catalog import default_catalog
from controlroom.kafka import ensure_topics, system_topics
from controlroom.logs import get_logger, route_stdlib_logging
from controlroom.runner import run_until_signalled
from controlroom.settings import Settings


def run_worker(settings: Settings, args: argparse.Namespace) -> int:
    import faust

    from streams.app import build_app

    if settings.kafka_transactions:
        get_logger("streams").warning(
            "KAFKA_TRANSACTIONS=true: Faust's exactly_once mode, for measurement only; it lost windows after a "
            "SIGKILL in every chaos run (README, Reliability) — leave it false in production")

    class Worker(faust.Worker):  # type: ignore[misc]  # faust is untyped
        """Faust's Worker replaces the root log handlers with its own (colour, stdout) at start: ours go back, so its
        lines, mode's and aiokafka's have our format (JSON in production)."""

        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            route_stdlib_logging()

    catalog = default_catalog()
    # Create topics with our partition count before Faust declares them with its own defaults.
    asyncio.run(ensure_topics(settings, system_topics(catalog)))
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = build_app(settings, catalog)
    # Faust narrates every service start at INFO: keep its own logs at WARN unless debugging (controlroom/logs.py).
    level = "DEBUG" if settings.log_level.lower() == "debug" else "WARN"
    worker = Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    worker.spinner = None  # the start-up spinner writes terminal escape codes into the merged log
    worker.execute_from_commandline()  # returns via SystemExit when stopped (SIGINT/SIGTERM)
    return 0


def run_alerter(settings: Settings, args: argparse.Namespace) -> int:
    from streams.alerter import Alerter

    alerter = Alerter(settings, default_catalog())  # a bad rules file fails here, naming the field
    run_until_signalled(alerter.run)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker")
    p.set_defaults(func=run_worker)
    p = sub.add_parser("alerter")
    p.set_defaults(func=run_alerter)
