"""`replay` publishes recorded readings to their feed topics; bad lines go to the dead-letter topic."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from controlroom.catalog import Catalog
from producers.publisher import replay_file

pytestmark = pytest.mark.integration


async def consume_all(bootstrap: str, topics: list[str], expected: int, timeout_s: float = 20) -> list:  # type: ignore[type-arg]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    got = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


async def test_replay_publishes_lines_and_dead_letters_bad_ones(broker: str, make_settings, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                catalog: Catalog) -> None:
    lines = [
        {"event_id": "r1", "feed": "water_level", "province": "01", "ts": "2026-11-22T10:00:00Z", "value": 401,
         "dims": {"station": "s1"}, "source": "rec"},
        {"event_id": "r2", "feed": "hotline_calls", "province": "77", "ts": 1795000000000, "value": 3,
         "dims": {"line": "113"}, "source": "rec"},  # legacy code: keyed by its current province
    ]
    path = tmp_path / "day.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(x) for x in lines) + b"\n{broken\n\n" +
                     orjson.dumps({"feed": "weather", "value": 1}) + b"\n")
    stats = await replay_file(make_settings(kafka_bootstrap=broker), catalog, path, progress=False)
    assert (stats.published, stats.dead_lettered) == (2, 2)
    got = await consume_all(broker, ["feeds.water_level", "feeds.hotline_calls", "feeds.dlq"], 4)
    by_topic = {(r.topic, r.key, r.value) for r in got if r.topic != "feeds.dlq"}
    assert by_topic == {("feeds.water_level", b"01", orjson.dumps(lines[0])),
                        ("feeds.hotline_calls", b"79", orjson.dumps(lines[1]))}
    dead = sorted((orjson.loads(r.value) for r in got if r.topic == "feeds.dlq"), key=lambda d: d["source_offset"])
    assert [(d["dlq_id"], d["reason"], d["payload"]) for d in dead] == [
        ("replay:day.jsonl:3", "malformed", "{broken"),
        ("replay:day.jsonl:5", "unknown_feed", '{"feed":"weather","value":1}'),
    ]


async def test_replay_of_a_missing_file_says_so(make_settings, catalog: Catalog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from controlroom.errors import ConfigError

    with pytest.raises(ConfigError, match="no such file"):
        await replay_file(make_settings(), catalog, tmp_path / "nope.jsonl", progress=False)
