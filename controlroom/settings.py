"""One frozen settings object per process, built in main() from the environment (never at import)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Each service's own metrics port (the API serves GET /metrics on API_PORT). Distinct, so services sharing a host
# (`make up`, systemd units) do not collide; METRICS_PORT overrides it, 0 turns the server off.
METRICS_PORTS: dict[str, int] = {"worker": 9101, "sink": 9102, "alerter": 9103, "notifier": 9104, "simulate": 9105}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, env_prefix="", extra="ignore", case_sensitive=False)

    # Kafka. Without KAFKA_BOOTSTRAP, `make up` starts a local broker and sets these for its children.
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotence: bool = True  # real Kafka: yes; Tansu has no InitProducerId, so `up` turns it off there
    # For measurement only: the worker on Faust's processing_guarantee="exactly_once" (transactional offset commits,
    # read_committed; Apache Kafka only, Tansu has none). It lost windows after SIGKILLs: README "Reliability"
    kafka_transactions: bool = False
    # `make up`'s local broker: kafka (Apache Kafka, data in DATA_DIR/kafka, needs Java 17), tansu (memory),
    # auto (Apache Kafka where Java and its jars are here, else Tansu)
    broker: Literal["auto", "tansu", "kafka"] = "auto"
    kafka_compression: Literal["none", "gzip", "lz4", "snappy", "zstd"] = "lz4"
    topic_partitions: int = 4
    # Topics are created with these (ensure_topics, and Faust's changelog): 1 on a single broker; on a cluster
    # of 3 or more, 3 and 2, so an acks=all write survives one broker down. Set on creation only.
    topic_replication: int = 1
    topic_min_insync_replicas: int = 1
    # readings and the worker's outputs are a buffer in front of ClickHouse: kept this long (a week), so a
    # stopped sink or a replay has that much to catch up from. State topics are kept otherwise (kafka.py).
    feed_retention_hours: float = 168.0
    broker_port: int = 9092  # the embedded broker's port

    # ClickHouse: chdb:///abs/path, chdb://relative/path, or http(s)://user:pass@host:8123/db
    clickhouse_url: SecretStr = SecretStr("chdb://./data/warehouse")
    clickhouse_database: str = "controlroom"

    # API (in embedded mode the sink runs inside the API process: one owner of the chDB path)
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    embedded_sink: bool | None = None  # None: on when CLICKHOUSE_URL is chdb://
    overview_refresh_s: float = 1.0  # GET /overview: figures recomputed at most this often (shared by all clients)
    overview_max_stale_s: float = 10.0  # …and served while a refresh runs, up to this age; older: the request waits
    wall_refresh_s: float = 5.0  # GET /wall/stream: seconds between two wall snapshots (one computation per process)

    data_dir: Path = Path("./data")

    # How long ClickHouse keeps rows, by each row's own time (TTLs set by `controlroom migrate`, sinks/retention.py;
    # 0 keeps them). Raw readings and their 1-minute windows: never less than MAX_PAST_S, so a backfill accepted
    # today finds its raw readings. agg_1d, alert and incident history and the audit log are always kept.
    readings_retention_days: int = 730
    rollup_retention_days: int = 1825  # agg_1h
    diagnostics_retention_days: int = 90  # dead letters, late readings
    deliveries_retention_days: int = 400  # every notification attempt

    # Validation and windows
    window_s: int = 60
    allowed_lateness_s: float = 10.0
    idle_advance_after_s: float = 5.0  # a partition quiet this long lets its watermark follow the clock
    # a late reading whose window is younger than this (by its partition's watermark) amends the stored window;
    # an older one is stored raw and counted `too_late` (`controlroom backfill` recomputes such ranges)
    amend_horizon_s: float = 2 * 86_400.0
    max_future_s: float = 300.0
    # a reading's event time may be at most this much older than its reference time (the Kafka message
    # timestamp, as for max_future_s): 400 days, so yearly backfills pass; never before 2000 either way
    max_past_s: float = 34_560_000.0

    # Micro-batches
    # Messages per micro-batch (and per consumer fetch): the worker takes what its consumer has fetched, up to
    # this, without waiting for more. Memory follows it, not the backlog: with ~100 readings per message, a
    # worker catching up on 920k readings peaks at ~210 MB (10,000: 423 MB).
    stream_batch_max: int = 500
    # Records per consumer fetch at most (a fetch is split into batches; about 8 MB of messages): each fetch wakes
    # the consumer's thread and the worker's, and 2,000 used ~20 % less CPU per one-reading message than 500
    stream_fetch_max: int = 2000
    sink_batch_rows: int = 50_000
    # an insert per table at most every 0.5 s (or every sink_batch_rows): readings queryable within ~1.7 s (p95)
    # at 10k/s, while inserts stay batched (thousands of rows each at that rate)
    sink_flush_interval_s: float = 0.5
    # the sink checks every window of its raw readings this long after it closed (sinks/healer.py): a stored
    # aggregate that differs from its readings then is recomputed by the sink itself (the worker lost the window).
    # Offsets of raw readings are committed only once their windows are checked.
    sink_heal_after_s: float = 60.0

    # Simulator
    sim_seed: int = 42
    sim_rate: float = 1.0
    # scenarios the simulator plays besides its normal data, `;`-separated (`make up` passes it on), e.g.
    # "flood:province=46" — see producers/scenarios.py
    sim_scenario: str = ""

    # Security (issue #3)
    ingest_max_readings: int = 10_000  # per POST /ingest
    ingest_max_bytes: int = 8 << 20  # request body limit (after gzip: also checked decompressed)
    rate_limit_per_s: float = 20.0  # requests per second per API key, bursts up to rate_limit_burst
    rate_limit_burst: float = 40.0
    query_max_rows: int = 10_000  # POST /query: ClickHouse stops past these
    query_max_seconds: float = 10.0
    cors_origins: str = ""  # comma-separated; empty = CORS off

    streams_app_id: str = "controlroom-streams"
    streams_report_s: float = 10.0  # how often the worker logs its counters
    sink_group_id: str = "controlroom-sink"

    # Notifier (issue #4): webhooks and e-mail for alert events
    notify_signing_key: SecretStr | None = None  # master key; each subscription's secret = HMAC(key, id)
    notify_group_id: str = "controlroom-notifier"
    notify_max_attempts: int = 5  # per delivery; then dead letter
    notify_backoff_s: float = 0.5  # delay before the 2nd attempt, doubling per attempt…
    notify_backoff_max_s: float = 30.0  # …up to this
    notify_timeout_s: float = 5.0  # per HTTP request / SMTP session
    notify_concurrency: int = 16  # deliveries in flight at once (across subscriptions)
    notify_batch_max: int = 500  # alert events per batch (offsets committed per batch)
    notify_external_url: str = ""  # Alertmanager payload `externalURL` (e.g. the API's public address)
    # An external Alertmanager (e.g. http://127.0.0.1:9093): the notifier also pushes every alert's state to its
    # POST /api/v2/alerts, as Prometheus does; firing alerts are sent again every ALERTMANAGER_RESEND_S
    alertmanager_url: str = ""
    alertmanager_resend_s: float = 60.0
    smtp_host: str = ""  # empty: no e-mail (e-mail deliveries are dead-lettered with the reason)
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "controlroom@localhost"

    # Alerting (issue #4)
    live_interval_s: float = 1.0  # an open window goes to the alerter at most this often (first touch: at once)
    alert_rules_file: Path | None = None  # None: the rules shipped in controlroom/data/rules.yaml
    incident_rules_file: Path | None = None  # None: the incident types shipped in controlroom/data/incidents.yaml
    alert_inhibit_file: Path | None = None  # None: the inhibition rules shipped in controlroom/data/inhibit.yaml
    alerter_tick_s: float = 1.0  # staleness, pending → firing, repeats, escalations
    alerter_snapshot_s: float = 5.0  # how much input a restarted alerter may have to read again
    grafana_url: str = "http://localhost:3000"  # alert links point at the feed explorer board here
    # CAP 1.2 (GET /alerts/{id}/cap, GET /cap/feed): <sender> of every document; a resolved public alert stays
    # on the feed this long (its AllClear message), then leaves it
    cap_sender: str = "controlroom@ops.gov.vn"
    cap_feed_resolved_s: float = 86_400.0

    # Prometheus metrics: the API serves GET /metrics on API_PORT; every other service (worker, sink, alerter,
    # notifier, simulator) on a small HTTP server of its own at METRICS_HOST:METRICS_PORT. Unset: the service's
    # default port (METRICS_PORTS above: 9101–9105); 0: off. `make up` gives each child its own.
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None

    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @property
    def is_embedded_clickhouse(self) -> bool:
        return self.clickhouse_url.get_secret_value().startswith("chdb://")

    @property
    def sink_in_api(self) -> bool:
        return self.is_embedded_clickhouse if self.embedded_sink is None else self.embedded_sink

