"""`controlroom notifier`: deliver alert events to webhook and e-mail subscriptions until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse

from controlroom.catalog import default_catalog
from controlroom.runner import run_until_signalled
from controlroom.settings import Settings


def run_notifier(settings: Settings, args: argparse.Namespace) -> int:
    from notify.service import Notifier

    notifier = Notifier(settings, default_catalog())  # refuses to start without NOTIFY_SIGNING_KEY
    run_until_signalled(notifier.run)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("notifier")
    p.set_defaults(func=run_notifier)
