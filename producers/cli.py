"""`controlroom simulate` and `controlroom replay FILE.jsonl`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from controlroom.catalog import default_catalog
from controlroom.errors import ConfigError
from controlroom.settings import Settings


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from producers.publisher import run_simulator
    from producers.scenarios import parse_scenario
    from producers.simulator import parse_incident

    now = int(time.time() * 1000)
    try:
        incidents = [parse_incident(spec, now) for spec in args.incident]
        scenarios = args.scenario or [s.strip() for s in settings.sim_scenario.split(";") if s.strip()]
        incidents += [inc for spec in scenarios for inc in parse_scenario(spec, now, default_catalog())]
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc

    async def main() -> None:
        await run_simulator(settings, default_catalog(), seed=args.seed if args.seed is not None else settings.sim_seed,
                            rate=args.rate or settings.sim_rate, incidents=incidents, stop=_stop_event(),
                            duration_s=args.duration)

    asyncio.run(main())
    return 0


def run_replay(settings: Settings, args: argparse.Namespace) -> int:
    from producers.publisher import replay_file

    async def main() -> None:
        stats = await replay_file(settings, default_catalog(), Path(args.file), rate=args.rate,
                                  progress=sys.stderr.isatty())
        print(f"replayed {args.file}: {stats.published} readings published, "
              f"{stats.dead_lettered} lines dead-lettered (feeds.dlq)")

    asyncio.run(main())
    return 0


def run_publish(settings: Settings, args: argparse.Namespace) -> int:
    """kcat -P for the embedded broker: each stdin line is one message to one topic, with one key."""
    from controlroom.kafka import make_producer

    lines = [line.rstrip(b"\n") for line in sys.stdin.buffer if line.strip()]
    headers = []
    for spec in args.header:
        name, sep, value = spec.partition("=")
        if not sep or not name:
            raise ConfigError(f"-H {spec!r}: give name=value, e.g. -H agency=hydromet")
        headers.append((name, value.encode()))

    async def main() -> None:
        # one message at a time, each awaited: idempotence adds nothing, and Tansu does not support it
        target = settings.model_copy(update={"kafka_bootstrap": args.broker or settings.kafka_bootstrap,
                                             "kafka_idempotence": False})
        producer = make_producer(target)
        await producer.start()
        try:
            for line in lines:
                await producer.send_and_wait(args.topic, line, key=args.key.encode() if args.key else None,
                                             headers=headers)
        finally:
            await producer.stop()

    asyncio.run(main())
    print(f"published {len(lines)} message(s) to {args.topic}", file=sys.stderr)
    return 0


def run_simulate_reports(settings: Settings, args: argparse.Namespace) -> int:
    """Report submissions through the API, a round now and then every --every seconds (make up runs it)."""
    import httpx

    from controlroom.api_call import api_key, api_url
    from controlroom.logs import get_logger
    from controlroom.reports import default_forms
    from producers.report_sim import submit_round

    log = get_logger("reports")
    key, url = api_key(settings, "simulate-reports"), api_url(settings, args.api or "")
    provinces = sorted(default_catalog().provinces)
    stopped = {"now": False}

    def stop(_signum: int, _frame: object) -> None:
        stopped["now"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not stopped["now"]:
        now = int(time.time() * 1000)
        try:
            with httpx.Client(base_url=url, timeout=30.0) as client:
                counts = submit_round(client, key, default_forms(), provinces, now, settings.sim_seed,
                                      args.province_agency)
            log.info("report round", **counts)
        except httpx.HTTPError as exc:  # the API restarting, or refusing: try again next round, never crash-loop
            log.error("report round failed", error=str(exc)[:300])
        if args.once:
            break
        deadline = time.monotonic() + args.every
        while not stopped["now"] and time.monotonic() < deadline:
            time.sleep(0.5)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulate")
    p.add_argument("--seed", type=int, default=None, help="RNG seed (default SIM_SEED, 42)")
    p.add_argument("--rate", type=float, default=None, help="multiply every feed's reporting rate (default SIM_RATE)")
    p.add_argument("--incident", action="append", default=[], metavar="SPEC",
                   help="inject an incident, e.g. spike:feed=hotline_calls,province=01,factor=5,start=+60,duration=300 "
                        "(kinds: spike, drop, silent, malformed, late; filters feed, province, agency)")
    p.add_argument("--scenario", action="append", default=[], metavar="SPEC",
                   help="move related feeds together so an incident forms, e.g. flood:province=46 "
                        "(options start=+0, duration=3600, ramp=300; see producers/scenarios.py)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=run_simulate)
    r = sub.add_parser("replay")
    r.add_argument("file", help="one JSON reading per line")
    r.add_argument("--rate", type=float, default=None, help="lines per second (default: as fast as possible)")
    r.set_defaults(func=run_replay)
    rep = sub.add_parser("simulate-reports")
    rep.add_argument("--api", default=None, help="the API's URL (default http://API_HOST:API_PORT)")
    rep.add_argument("--every", type=float, default=600.0, help="seconds between rounds (default 600)")
    rep.add_argument("--once", action="store_true", help="one round, then exit")
    rep.add_argument("--province-agency", default="ioc_{code}",
                     help="the agency whose key, scoped to the province, submits a province's reports "
                          "(default: the province's operations center, ioc_{code})")
    rep.set_defaults(func=run_simulate_reports)
    pub = sub.add_parser("publish")
    pub.add_argument("-b", "--broker", default=None, help="bootstrap servers (default KAFKA_BOOTSTRAP)")
    pub.add_argument("-t", "--topic", required=True)
    pub.add_argument("-k", "--key", default=None, help="message key (the province code for feeds.*)")
    pub.add_argument("-H", "--header", action="append", default=[], metavar="NAME=VALUE",
                     help="a header of every message, as kcat's; readings need agency=<id> (agencies.yaml)")
    pub.set_defaults(func=run_publish)
