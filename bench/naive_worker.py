"""Baseline for `make bench`: the naive Faust agent — per-event `async for`, a windowed Table updated
per reading (one changelog message each). What the real worker is measured against."""

from __future__ import annotations

import os
import time

import faust
import orjson

from controlroom.catalog import default_catalog
from controlroom.kafka import GROUP_HEARTBEAT_INTERVAL_MS, GROUP_REBALANCE_TIMEOUT_MS, GROUP_SESSION_TIMEOUT_MS

catalog = default_catalog()
PARTITIONS = int(os.environ.get("TOPIC_PARTITIONS", "4"))
app = faust.App(os.environ["BENCH_APP_ID"], broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP']}", store="memory://",
                value_serializer="raw", key_serializer="raw", topic_partitions=PARTITIONS,
                web_enabled=False, broker_session_timeout=GROUP_SESSION_TIMEOUT_MS / 1000,
                broker_heartbeat_interval=GROUP_HEARTBEAT_INTERVAL_MS / 1000,
                broker_rebalance_timeout=GROUP_REBALANCE_TIMEOUT_MS / 1000, consumer_auto_offset_reset="earliest")
source = app.topic(*catalog.topics, value_serializer="raw", key_serializer="raw")
sums = app.Table("naive-sums", default=float, partitions=PARTITIONS).tumbling(
    60, expires=3600)
state = {"n": 0, "t": 0.0}
target = int(os.environ["BENCH_N"])


@app.agent(source)
async def naive(stream: faust.StreamT) -> None:
    async for raw in stream:
        doc = orjson.loads(raw)
        key = f"{doc['feed']}|{doc['province']}"
        sums[key] += float(doc["value"])  # one table write, one changelog message, per reading
        if state["n"] == 0:
            state["t"] = time.time()
        state["n"] += 1
        if state["n"] >= target:
            print(f"NAIVE_DONE {state['n']} {time.time() - state['t']:.3f}", flush=True)
            os._exit(0)
