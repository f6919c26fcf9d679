"""Publishing to Kafka: the simulator loop and the replay of recorded readings."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from tqdm import tqdm

from controlroom import metrics
from controlroom.catalog import Catalog
from controlroom.errors import ConfigError
from controlroom.kafka import all_topics, ensure_topics
from controlroom.logs import get_logger
from controlroom.schema import DLQ_TOPIC, Rejection, agency_headers, dead_letter
from controlroom.settings import Settings
from producers.rdkafka import RdKafkaProducer
from producers.simulator import Incident, Message, Simulator

log = get_logger("producers")
TICK_S = 0.1


@dataclass
class PublishStats:
    published: int = 0
    dead_lettered: int = 0


async def send_all(producer, catalog: Catalog, messages: list[Message]) -> None:  # type: ignore[no-untyped-def]
    """Hand a whole tick to the producer (aiokafka's, or producers.rdkafka's), then wait once for all
    acknowledgements. Each reading is sent as the agency that supplies its series (header `agency`)."""
    if isinstance(producer, RdKafkaProducer):
        await producer.send_batch([(topic, value, key, agency_headers(catalog, topic, key))
                                   for topic, key, value in messages])
        return
    futures = [await producer.send(topic, value, key=key, headers=agency_headers(catalog, topic, key))
               for topic, key, value in messages]
    if futures:
        await asyncio.gather(*futures)


async def run_simulator(settings: Settings, catalog: Catalog, *, seed: int, rate: float,
                        incidents: list[Incident], stop: asyncio.Event,
                        duration_s: float | None = None) -> PublishStats:
    await ensure_topics(settings, all_topics(catalog))
    producer = RdKafkaProducer(settings)  # librdkafka: 2.4× aiokafka here (bench/producers_bench.py)
    await producer.start()
    start = time.time()
    sim = Simulator(catalog, seed=seed, rate=rate, start_ms=int(start * 1000), incidents=incidents)
    stats = PublishStats()
    last_report, last_count = time.monotonic(), 0
    log.info("simulator started", series=len(sim.series), rate=rate, seed=seed, incidents=len(incidents))
    try:
        while not stop.is_set() and (duration_s is None or time.time() - start < duration_s):
            batch = sim.due(int(time.time() * 1000))
            await send_all(producer, catalog, batch)
            stats.published += len(batch)
            metrics.SIMULATOR_MESSAGES.inc(len(batch))
            if time.monotonic() - last_report >= 10:
                per_s = (stats.published - last_count) / (time.monotonic() - last_report)
                log.info("simulator progress", published=stats.published, per_s=round(per_s, 1))
                last_report, last_count = time.monotonic(), stats.published
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
    finally:
        await producer.stop()
    log.info("simulator stopped", published=stats.published)
    return stats


def replay_messages(line: bytes, line_no: int, path: Path, catalog: Catalog, now_ms: int) -> Message:
    """Where one recorded line goes: its feed's topic, or the dead-letter topic with the reason."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        rejection = Rejection("malformed", "", f"not valid JSON: {exc.msg}")
    else:
        feed = doc.get("feed") if isinstance(doc, dict) else None
        if isinstance(feed, str) and feed in catalog.feeds:
            province = doc.get("province")
            key = catalog.current_province(province) or province if isinstance(province, str) else ""
            return catalog.feeds[feed].topic, str(key).encode(), line
        rejection = Rejection("unknown_feed", "feed", f"no known feed in line {line_no}")
    dlq = dead_letter(rejection, line, source_topic="replay", partition=0, offset=line_no, received_ms=now_ms,
                      dlq_id=f"replay:{path.name}:{line_no}")
    return DLQ_TOPIC, b"replay", orjson.dumps(dlq)


async def replay_file(settings: Settings, catalog: Catalog, path: Path, *, rate: float | None = None,
                      progress: bool = True) -> PublishStats:
    if not path.is_file():
        raise ConfigError(f"replay: no such file {path}")
    await ensure_topics(settings, all_topics(catalog))
    producer = RdKafkaProducer(settings)  # librdkafka: 2.4× aiokafka here (bench/producers_bench.py)
    await producer.start()
    stats = PublishStats()
    started = time.monotonic()
    pending: list[Message] = []
    try:
        with path.open("rb") as fh, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                         disable=not progress, desc=f"replay {path.name}") as bar:
            for line_no, line in enumerate(fh, start=1):
                bar.update(len(line))
                line = line.strip()
                if not line:
                    continue
                topic, key, value = replay_messages(line, line_no, path, catalog, int(time.time() * 1000))
                pending.append((topic, key, value))
                if topic == DLQ_TOPIC:
                    stats.dead_lettered += 1
                else:
                    stats.published += 1
                if len(pending) >= 1000:
                    await send_all(producer, catalog, pending)
                    pending = []
                if rate:  # pace to `rate` lines per second
                    ahead = (stats.published + stats.dead_lettered) / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await send_all(producer, catalog, pending)
                        pending = []
                        await asyncio.sleep(ahead)
            await send_all(producer, catalog, pending)
    finally:
        await producer.stop()
    return stats
