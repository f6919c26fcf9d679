"""Prometheus metrics: every metric of every service, defined once here (names prefixed `controlroom_`), and the
small HTTP server each long-running service serves them on (the API serves them as its own GET /metrics).

Instrumentation stays thin: a hot path adds a batch's count once per batch and label (inc(n)), never per reading.
Consumer lag is sampled from each consumer's own view (the high watermark its last fetch returned minus the next
offset it will read), at most once a second, into a snapshot that a scrape reads: the HTTP server's thread never
calls into a Kafka client.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlroom.logs import get_logger
from controlroom.settings import METRICS_PORTS

log = get_logger("metrics")

LAG_SAMPLE_S = 1.0  # consumer lag is recomputed at most this often per consumer

# --- the API ---------------------------------------------------------------------------------------------------
INGEST_READINGS = Counter("controlroom_ingest_readings", "Readings pushed to POST /ingest: accepted (on the broker) "
                          "or rejected (answered with the reason)", ["status"])

# --- the streams worker ---------------------------------------------------------------------------------------
READINGS_IN = Counter("controlroom_readings_in", "Readings the worker read from a feed topic, valid or not (an "
                      "unreadable message counts as one)", ["feed"])
READINGS_OUT = Counter("controlroom_readings_out", "Valid readings the worker added to open 1-minute windows "
                       "(late, duplicate and replayed ones not counted)", ["feed"])
DUPLICATES = Counter("controlroom_readings_duplicate", "Readings whose event_id the worker had already seen in "
                     "their window", ["feed"])
DEAD_LETTERS = Counter("controlroom_dead_letters", "Readings the worker rejected to feeds.dlq (with a reason)",
                       ["feed"])
LATE = Counter("controlroom_late_readings", "Late readings reported on feeds.late: status `amended` (the stored "
               "window is recomputed) or `too_late` (older than AMEND_HORIZON_S)", ["feed", "status"])
WINDOWS_CLOSED = Counter("controlroom_windows_closed", "1-minute windows closed and published on agg.1m")
BATCH_SECONDS = Histogram("controlroom_batch_duration_seconds", "One micro-batch: the worker's (validate, window, "
                          "dead-letter) and the sink's flush (inserts, recompute, offset commit)", ["service"])
WINDOW_CLOSE_SECONDS = Histogram("controlroom_window_close_duration_seconds", "One pass of the window-closing "
                                 "timer that closed windows: publish on agg.1m, await the acks, write the changelog")

# --- the sink -------------------------------------------------------------------------------------------------
SINK_RECORDS = Counter("controlroom_sink_records_in", "Kafka records the sink read", ["topic"])
SINK_ROWS = Counter("controlroom_sink_rows_out", "Rows the sink inserted into ClickHouse", ["table"])
SINK_HEALED = Counter("controlroom_sink_windows_healed", "Windows the sink recomputed itself: their stored "
                      "aggregate differed from their readings after the window closed (the worker lost or had not "
                      "yet closed it; sinks/healer.py)")
SINK_FAILURES = Counter("controlroom_sink_insert_failures", "Failed insert attempts (the batch is kept, retried "
                        "and its offsets stay uncommitted)")

# --- the alerter and its incident correlator ------------------------------------------------------------------
ALERTER_INPUTS = Counter("controlroom_alerter_inputs", "Records the alerter read", ["topic"])
ALERT_EVENTS = Counter("controlroom_alert_events", "Alert events published on `alerts`, by the alert's state "
                       "after the event (pending, firing, resolved)", ["state", "severity"])
INCIDENT_EVENTS = Counter("controlroom_incident_events", "Incident events published on `incidents`", ["event"])

# --- the notifier ---------------------------------------------------------------------------------------------
DELIVERY_ATTEMPTS = Counter("controlroom_delivery_attempts", "Notification attempts (one request or e-mail each, "
                            "carrying one or more alert events), by the status recorded: delivered, retry, "
                            "dead_letter", ["channel", "status"])
DELIVERY_FAILURES = Counter("controlroom_delivery_failures", "Attempts the receiver did not accept (then retried "
                            "or dead-lettered)", ["channel"])
DELIVERY_SECONDS = Histogram("controlroom_delivery_duration_seconds", "One notification attempt", ["channel"])

# --- the simulator --------------------------------------------------------------------------------------------
SIMULATOR_MESSAGES = Counter("controlroom_simulator_messages", "Messages the simulator published (one reading "
                             "or a batch of readings each)")


def add(counter: Counter, by_label: Mapping[str, int]) -> None:
    """A batch's counts, once per label value."""
    for label, n in by_label.items():
        if n:
            counter.labels(label).inc(n)


def delivery_attempt(channel: str, status: str, ok: bool, seconds: float) -> None:
    DELIVERY_ATTEMPTS.labels(channel, status).inc()
    DELIVERY_SECONDS.labels(channel).observe(seconds)
    if not ok:
        DELIVERY_FAILURES.labels(channel).inc()


def prepare(counter: Counter, labels: Iterable[str]) -> None:
    """Series at 0 for every known label value: present from the start, so rate() sees the first increase."""
    for label in labels:
        counter.labels(label)


class ConsumerLag(Collector):
    """`controlroom_consumer_lag{group, topic, partition}`: each consumer's latest sample, replaced whole (a scrape
    reads one consistent snapshot; a revoked partition disappears with the next sample)."""

    def __init__(self) -> None:
        self._samples: dict[str, dict[tuple[str, int], int]] = {}

    def set(self, group: str, lags: Mapping[tuple[str, int], int]) -> None:
        self._samples = {**self._samples, group: dict(lags)}

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("controlroom_consumer_lag", "Records not yet read: the partition's high "
                                   "watermark (as the consumer's last fetch saw it) minus the consumer's position",
                                   labels=["group", "topic", "partition"])
        for group, lags in self._samples.items():
            for (topic, partition), lag in sorted(lags.items()):
                family.add_metric([group, topic, str(partition)], lag)
        yield family


CONSUMER_LAG = ConsumerLag()
REGISTRY.register(CONSUMER_LAG)


class LagProbe:
    """Samples one aiokafka consumer's lag into CONSUMER_LAG, at most every LAG_SAMPLE_S."""

    def __init__(self, group: str, consumer: Any) -> None:
        self.group, self.consumer = group, consumer
        self._last = 0.0

    async def sample(self) -> None:
        now = time.monotonic()
        if now - self._last < LAG_SAMPLE_S:
            return
        self._last = now
        lags: dict[tuple[str, int], int] = {}
        for tp in list(self.consumer.assignment()):
            try:
                high = self.consumer.highwater(tp)
                if high is not None:  # known once a fetch of the partition returned; then the position is too
                    lags[(tp.topic, tp.partition)] = max(0, high - await self.consumer.position(tp))
            except Exception:  # noqa: S112 (revoked meanwhile: the next sample has the new assignment)
                continue
        CONSUMER_LAG.set(self.group, lags)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type (the API's GET /metrics)."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def serve(service: str, host: str, port: int | None) -> int | None:
    """Start the service's metrics server (a daemon thread); the port it listens on, or None when off. A port that
    cannot be bound is logged, not fatal: the pipeline matters more than the report on it."""
    port = METRICS_PORTS[service] if port is None else port
    if port == 0:
        return None
    try:
        start_http_server(port, host)
    except OSError as exc:
        log.error("metrics server not started: no /metrics", service=service, host=host, port=port, error=str(exc))
        return None
    log.info("metrics served", url=f"http://{host}:{port}/metrics")
    return port
