"""Pure conversion of Kafka records into Arrow tables, one per target table. No I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa

from controlroom.catalog import Catalog
from controlroom.schema import AGG_TOPIC, DLQ_TOPIC, LATE_TOPIC, Reading, decode_message

TS = pa.timestamp("ms", tz="UTC")
DIMS = pa.map_(pa.string(), pa.string())


@dataclass(frozen=True, slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None


def target_of(topic: str) -> str:
    """Which table a topic's records go to."""
    return {AGG_TOPIC: "agg_1m", DLQ_TOPIC: "dead_letters", LATE_TOPIC: "late_readings"}.get(topic, "readings")


def readings_table(records: Iterable[Record], catalog: Catalog, *, max_future_ms: int,
                   ingested_ms: int) -> tuple[pa.Table, int]:
    """Valid readings as rows; returns (table, rejected). Rejects are the worker's to dead-letter."""
    cols: dict[str, list[Any]] = {k: [] for k in (
        "event_id", "feed", "province", "province_original", "ts", "value", "dims", "dims_key", "source",
        "kafka_topic", "kafka_partition", "kafka_offset")}
    rejected = 0
    for rec in records:
        feed = catalog.feed_for_topic(rec.topic)
        verdicts = decode_message(rec.value, catalog, ref_ms=rec.timestamp_ms, max_future_ms=max_future_ms,
                                  topic_feed=feed.id if feed else None)
        for v in verdicts:
            if not isinstance(v, Reading):
                rejected += 1
                continue
            cols["event_id"].append(v.event_id)
            cols["feed"].append(v.feed)
            cols["province"].append(v.province)
            cols["province_original"].append(v.province_original)
            cols["ts"].append(v.ts_ms)
            cols["value"].append(v.value)
            cols["dims"].append(list(v.dims.items()))
            cols["dims_key"].append(v.dims_key)
            cols["source"].append(v.source)
            cols["kafka_topic"].append(rec.topic)
            cols["kafka_partition"].append(rec.partition)
            cols["kafka_offset"].append(rec.offset)
    n = len(cols["event_id"])
    table = pa.table({
        **{k: cols[k] for k in ("event_id", "feed", "province", "province_original")},
        "ts": pa.array(cols["ts"], TS), "value": pa.array(cols["value"], pa.float64()),
        "dims": pa.array(cols["dims"], DIMS), "dims_key": cols["dims_key"], "source": cols["source"],
        "ingested_at": pa.array([ingested_ms] * n, TS), "kafka_topic": cols["kafka_topic"],
        "kafka_partition": pa.array(cols["kafka_partition"], pa.uint32()),
        "kafka_offset": pa.array(cols["kafka_offset"], pa.uint64()),
    })
    return table, rejected


def _docs(records: Iterable[Record]) -> list[tuple[Record, dict[str, Any]]]:
    out = []
    for rec in records:
        try:
            doc = orjson.loads(rec.value or b"")
        except orjson.JSONDecodeError:
            continue  # our own topics carry only what our worker wrote; nothing else to keep
        if isinstance(doc, dict):
            out.append((rec, doc))
    return out


def agg_table(records: Iterable[Record]) -> pa.Table:
    docs = [d for _, d in _docs(records)]
    return pa.table({
        "feed": [d["feed"] for d in docs], "province": [d["province"] for d in docs],
        "dims": pa.array([list(d["dims"].items()) for d in docs], DIMS),
        "dims_key": [d["dims_key"] for d in docs],
        "source_partition": pa.array([d.get("source_partition", 0) for d in docs], pa.uint32()),
        "window_start": pa.array([d["window_start"] for d in docs], TS),
        "window_end": pa.array([d["window_end"] for d in docs], TS),
        "count": pa.array([d["count"] for d in docs], pa.uint64()),
        **{k: pa.array([float(d[k]) for d in docs], pa.float64()) for k in ("sum", "min", "max", "avg", "last")},
        "last_ts": pa.array([d["last_ts"] for d in docs], TS),
        "closed_at": pa.array([d["closed_ms"] for d in docs], TS),
    })


def _feed_of_dead_letter(doc: dict[str, Any], catalog: Catalog) -> str:
    feed = catalog.feed_for_topic(doc.get("source_topic", ""))
    if feed:
        return feed.id
    try:
        payload = orjson.loads(doc.get("payload", ""))
    except orjson.JSONDecodeError:
        return ""
    name = payload.get("feed") if isinstance(payload, dict) else None
    return name if isinstance(name, str) and name in catalog.feeds else ""


def dead_letters_table(records: Iterable[Record], catalog: Catalog) -> pa.Table:
    pairs = _docs(records)
    docs = [d for _, d in pairs]
    return pa.table({
        "dlq_id": [d["dlq_id"] for d in docs], "reason": [d["reason"] for d in docs],
        "field": [d.get("field", "") for d in docs], "detail": [d.get("detail", "") for d in docs],
        "payload": [d.get("payload", "") for d in docs], "feed": [_feed_of_dead_letter(d, catalog) for d in docs],
        "source_topic": [d.get("source_topic", "") for d in docs],
        "source_partition": pa.array([d.get("source_partition", 0) for d in docs], pa.uint32()),
        "source_offset": pa.array([d.get("source_offset", -1) for d in docs], pa.int64()),
        "received_at": pa.array([d.get("received_ms", r.timestamp_ms) for r, d in pairs], TS),
        "kafka_offset": pa.array([r.offset for r, _ in pairs], pa.uint64()),
    })


def late_table(records: Iterable[Record]) -> pa.Table:
    docs = [d for _, d in _docs(records)]
    return pa.table({
        "event_id": [d["event_id"] for d in docs], "feed": [d["feed"] for d in docs],
        "province": [d["province"] for d in docs], "dims": pa.array([list(d["dims"].items()) for d in docs], DIMS),
        "dims_key": [",".join(f"{k}={d['dims'][k]}" for k in sorted(d["dims"])) for d in docs],
        "ts": pa.array([d["ts"] for d in docs], TS), "value": pa.array([float(d["value"]) for d in docs]),
        "watermark": pa.array([d["watermark"] for d in docs], TS),
        "source_topic": [d["source_topic"] for d in docs],
        "source_partition": pa.array([d["source_partition"] for d in docs], pa.uint32()),
        "source_offset": pa.array([d["source_offset"] for d in docs], pa.int64()),
        "detected_at": pa.array([d["detected_ms"] for d in docs], TS),
    })


def dedup_token(table: str, records: Iterable[Record]) -> str:
    """Deterministic per batch: the offset range of each topic-partition in it."""
    ranges: dict[tuple[str, int], list[int]] = {}
    for r in records:
        lo_hi = ranges.setdefault((r.topic, r.partition), [r.offset, r.offset])
        lo_hi[0] = min(lo_hi[0], r.offset)
        lo_hi[1] = max(lo_hi[1], r.offset)
    parts = ",".join(f"{t}-{p}-{lo}-{hi}" for (t, p), (lo, hi) in sorted(ranges.items()))
    return f"{table}:{hashlib.sha256(parts.encode()).hexdigest()}"  # compact: a batch may span 100 partitions
