"""The wire formats every process shares, and the one validation path for readings.

Every message between processes is plain JSON with one TypedDict here, its builder and its reader side
by side: readings (validated by `validate`), dead letters, late readings, closed and live windows,
alert events, control commands and delivery records. A reader (`read_*`) decodes and checks that the
required fields are there, raising MessageError (a ValueError) that names what is missing.

A reading on topic ``feeds.<feed>`` (key = province code), plain JSON:
    {"event_id": "…", "feed": "water_level", "province": "01", "ts": "2026-11-22T10:00:00Z",
     "value": 412.5, "dims": {"station": "s1"}, "source": "hydro-station-01"}
``ts`` is ISO 8601 with a timezone, or epoch milliseconds (a number), no earlier than 2000-01-01.
``event_id`` is 1–128 characters without surrounding whitespace. A dimension the catalog lists as
closed takes only its listed values; an open one takes any value. A feed with `communes: true` takes
``dims.commune`` too (a commune of the reading's province): stored with the reading, not part of its series.

The Kafka record header ``agency`` names the body that sent it (controlroom/data/agencies.yaml); it must
supply the feed (and, for a province's center, that province), else the reading is refused.

Validation is a pure function of the bytes, the sender, the catalog and a reference time. Kafka consumers use
the message's own timestamp as that reference, so every consumer of a topic reaches the same verdict.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, NotRequired, TypedDict, cast

import orjson

from controlroom.catalog import NATIONAL, TOPIC_PREFIX, Catalog
from controlroom.communes import COMMUNE_DIM
from controlroom.errors import ConfigError

DLQ_TOPIC = f"{TOPIC_PREFIX}dlq"
LATE_TOPIC = f"{TOPIC_PREFIX}late"
AGG_TOPIC = "agg.1m"

MAX_ID_LEN = 128
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z: no reading is older, whatever MAX_PAST_S allows
DEFAULT_MAX_PAST_MS = 34_560_000_000  # 400 days, Settings.max_past_s's default
MAX_DIM_LEN = 64
MAX_SOURCE_LEN = 128

# Rejection reasons (the `reason` column of dead letters)
MALFORMED = "malformed"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
UNKNOWN_FEED = "unknown_feed"
FEED_TOPIC_MISMATCH = "feed_topic_mismatch"
UNKNOWN_PROVINCE = "unknown_province"
SCOPE_MISMATCH = "scope_mismatch"
UNKNOWN_DIM = "unknown_dim"
UNKNOWN_DIM_VALUE = "unknown_dim_value"
OUT_OF_RANGE = "out_of_range"
IN_FUTURE = "in_future"
TOO_OLD = "too_old"
BAD_TIMESTAMP = "bad_timestamp"
MISSING_AGENCY = "missing_agency"
WRONG_AGENCY = "wrong_agency"

# The Kafka record header naming the body that delivered the message (controlroom/data/agencies.yaml).
# /ingest sets it from the key's agency, the simulator and replay from the series' supplier; the worker
# and the sink read it and pass it to `decode_message`, so both reach the same verdict.
AGENCY_HEADER = "agency"

REQUIRED = ("event_id", "feed", "province", "ts", "value")


class Reading(NamedTuple):
    """A valid reading. A named tuple, not a dataclass: the worker builds ~100k of these per second."""

    event_id: str
    feed: str
    province: str  # current (post-2025) code, or "00" for national feeds
    ts_ms: int
    value: float
    dims: dict[str, str]
    source: str
    province_original: str  # as sent; differs from `province` when a legacy code was mapped
    commune: str = ""  # dims.commune as sent (checked against the province), kept out of `dims`: not a series
    agency: str = ""  # the body that delivered it (header `agency`, or the /ingest key's agency)

    @property
    def dims_key(self) -> str:
        return dims_key(self.dims)


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    field: str
    detail: str

    def message(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


def dims_key(dims: dict[str, str]) -> str:
    """Canonical text of a dims map: sorted k=v joined by ','; '' when empty."""
    return ",".join(f"{k}={dims[k]}" for k in sorted(dims)) if dims else ""


def series_key(feed: str, province: str, dkey: str) -> str:
    return f"{feed}|{province}|{dkey}"


def parse_ts(raw: Any) -> int | None:
    """Epoch milliseconds from ISO 8601 text with a timezone, or from a number of epoch ms."""
    if type(raw) is int:  # the common case first (bool is a subclass of int, not this type)
        return raw
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return int(raw) if math.isfinite(raw) else None
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None
        return int(dt.timestamp() * 1000)
    return None


def now_ms() -> int:
    return time.time_ns() // 1_000_000


EARLIEST_S, LATEST_S = 946_684_800, 4_102_444_800  # 2000-01-01, 2100-01-01 (UTC)


def parse_instant(value: Any, field: str, error: type[Exception] = ConfigError) -> int:
    """Epoch seconds (a number, or a string of one) or an ISO 8601 date or time (UTC when no zone) → epoch ms,
    between 2000-01-01 and 2100-01-01 (nothing is stored outside; a larger number is a mistake, not a time).
    Raises `error` naming the field."""
    if isinstance(value, bool) or value is None:
        raise error(f"{field}: give epoch seconds or an ISO 8601 time")
    text = str(value).strip()
    try:
        seconds = float(value) if isinstance(value, int | float) else float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not EARLIEST_S <= seconds < LATEST_S:  # NaN fails both
            raise error(f"{field}: epoch seconds between {EARLIEST_S} (2000-01-01) and {LATEST_S} (2100-01-01)")
        return int(round(seconds * 1000))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise error(f"{field}: not epoch seconds nor an ISO 8601 time: {text[:64]!r}") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if not EARLIEST_S <= when.timestamp() < LATEST_S:
        raise error(f"{field}: a time between 2000-01-01 and 2100-01-01")
    return int(when.timestamp() * 1000)


def ms_to_iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def agency_of(headers: Any) -> str | None:
    """The `agency` header of a Kafka record ((name, bytes) pairs, or a mapping), None when absent or not UTF-8."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    for name, value in pairs:
        if name == AGENCY_HEADER:
            try:
                return bytes(value).decode() if value is not None else None
            except UnicodeDecodeError:
                return None
    return None


def agency_headers(catalog: Catalog, topic: str, key: bytes | None) -> list[tuple[str, bytes]]:
    """Headers of a message on a feed topic keyed by province, sent as the series' supplier in the registry
    (the simulator, replay); none for another topic or a series nobody supplies."""
    feed = catalog.feed_for_topic(topic)
    code = (key or b"").decode(errors="replace")
    supplier = catalog.registry.supplier(feed.id, catalog.current_province(code) or code) if feed else ""
    return [(AGENCY_HEADER, supplier.encode())] if supplier else []


def validate(doc: Any, catalog: Catalog, *, ref_ms: int, max_future_ms: int,
             max_past_ms: int = DEFAULT_MAX_PAST_MS, topic_feed: str | None = None,
             agency: str | None = None) -> Reading | Rejection:
    """Check one decoded reading. `ref_ms` is "now" for the future and past limits; `topic_feed` the feed
    its topic names; `agency` the body that sent it (None: unknown, rejected), checked against the registry."""
    if not isinstance(doc, dict):
        return Rejection(MALFORMED, "", f"a reading must be a JSON object, not {type(doc).__name__}")
    try:
        event_id, feed_id, province, value = doc["event_id"], doc["feed"], doc["province"], doc["value"]
        ts_raw = doc["ts"]
    except KeyError:
        for name in REQUIRED:  # name the first missing field in a stable order
            if name not in doc:
                return Rejection(MISSING_FIELD, name, "is required")
        raise
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_ID_LEN or event_id != event_id.strip():
        return _bad_event_id(event_id)
    if not isinstance(feed_id, str):
        return Rejection(WRONG_TYPE, "feed", "must be a string")
    feed = catalog.feeds.get(feed_id)
    if feed is None:
        return Rejection(UNKNOWN_FEED, "feed", f"unknown feed {feed_id[:64]!r}")
    if topic_feed is not None and topic_feed != feed_id:
        return Rejection(FEED_TOPIC_MISMATCH, "feed", f"feed {feed_id!r} sent on the topic of {topic_feed!r}")
    if not isinstance(province, str):
        return Rejection(WRONG_TYPE, "province", "must be a string such as \"01\"")
    if feed.scope == "national":
        if province != NATIONAL:
            return Rejection(SCOPE_MISMATCH, "province", f"national feed {feed_id} takes province 00")
        current = NATIONAL
    else:
        mapped = province if province in catalog.provinces else catalog.legacy_to_current.get(province)
        if mapped is None:
            return Rejection(UNKNOWN_PROVINCE, "province", f"unknown province code {province[:16]!r}")
        current = mapped
    vtype = type(value)
    if vtype is not float and (vtype is bool or not isinstance(value, int | float)):
        return Rejection(WRONG_TYPE, "value", "must be a number")
    value = float(value)
    if value - value != 0.0:  # inf or nan (math.isfinite, without the call)
        return Rejection(WRONG_TYPE, "value", "must be finite")
    if not feed.valid_min <= value <= feed.valid_max:
        return Rejection(OUT_OF_RANGE, "value",
                         f"{value:g} outside [{feed.valid_min:g}, {feed.valid_max:g}] {feed.unit}")
    ts_ms = ts_raw if type(ts_raw) is int else parse_ts(ts_raw)
    if ts_ms is None:
        return Rejection(BAD_TIMESTAMP, "ts", "must be ISO 8601 with a timezone, or epoch milliseconds")
    if ts_ms > ref_ms + max_future_ms:
        return Rejection(IN_FUTURE, "ts", f"{(ts_ms - ref_ms) / 1000:.0f} s in the future "
                                          f"(limit {max_future_ms / 1000:.0f} s)")
    if ts_ms < ref_ms - max_past_ms or ts_ms < MIN_TS_MS:
        return _too_old(ts_ms, ref_ms, max_past_ms)
    raw_dims = doc.get("dims") or {}
    if not isinstance(raw_dims, dict):
        return Rejection(WRONG_TYPE, "dims", "must be an object of strings")
    allowed, open_dims = feed.dims, feed.open_dims
    commune = ""
    for k, v in raw_dims.items():
        if k not in allowed and not (k == COMMUNE_DIM and feed.communes):
            return Rejection(UNKNOWN_DIM, f"dims.{k}"[:80], f"feed {feed_id} has dims {sorted(feed.dims)}")
        if type(v) is not str or not v or len(v) > MAX_DIM_LEN:
            return Rejection(WRONG_TYPE, f"dims.{k}", f"must be a non-empty string of at most {MAX_DIM_LEN} chars")
        if k == COMMUNE_DIM:
            wrong = _wrong_commune(v, current, catalog)
            if wrong is not None:
                return wrong
            commune = v
        elif k not in open_dims and v not in allowed[k]:
            return Rejection(UNKNOWN_DIM_VALUE, f"dims.{k}", f"{v!r} is not one of {', '.join(allowed[k])}")
    # every key and value checked: the decoded object is ours to keep (less the commune, which names no series)
    dims: dict[str, str] = {k: v for k, v in raw_dims.items() if k != COMMUNE_DIM} if commune else raw_dims
    source = doc.get("source", "")
    if not isinstance(source, str) or len(source) > MAX_SOURCE_LEN:
        return Rejection(WRONG_TYPE, "source", f"must be a string of at most {MAX_SOURCE_LEN} chars")
    # the sender last: a reading is judged on its content first, so /ingest answers as it did before senders
    scope = catalog.registry.scope.get((agency, feed_id))  # one lookup on the hot path; the reason only on a refusal
    if scope is None or (scope and scope != current):
        return Rejection(MISSING_AGENCY if agency is None else WRONG_AGENCY, f"header.{AGENCY_HEADER}",
                         catalog.registry.sender_denial(agency, feed_id, current) or "")
    return Reading(event_id, feed_id, current, ts_ms, value, dims, source, province, commune, agency or "")


def _wrong_commune(code: str, province: str, catalog: Catalog) -> Rejection | None:
    """A commune must be one the library knows, in the reading's (current) province."""
    known = catalog.communes.get(code)
    if known is None:
        return Rejection(UNKNOWN_DIM_VALUE, f"dims.{COMMUNE_DIM}",
                         f"{code[:16]!r} is not a commune code (five digits of the statistics office)")
    if known.province != province:
        return Rejection(UNKNOWN_DIM_VALUE, f"dims.{COMMUNE_DIM}",
                         f"commune {code} ({known.name}) is in province {known.province}, not {province}")
    return None


def _bad_event_id(event_id: Any) -> Rejection:
    """Why an event_id was refused: one reason (wrong_type), a precise detail."""
    rule = f"must be a string of 1 to {MAX_ID_LEN} chars without surrounding whitespace"
    if not isinstance(event_id, str):
        problem = f"a {type(event_id).__name__}"
    elif not event_id.strip():
        problem = "empty or only whitespace"
    elif len(event_id) > MAX_ID_LEN:
        problem = f"{len(event_id)} chars"
    else:
        problem = "leading or trailing whitespace"
    return Rejection(WRONG_TYPE, "event_id", f"{rule} ({problem})")


def _too_old(ts_ms: int, ref_ms: int, max_past_ms: int) -> Rejection:
    if ts_ms < MIN_TS_MS:
        return Rejection(TOO_OLD, "ts", f"{ts_ms} ms is before 2000-01-01T00:00:00Z")
    return Rejection(TOO_OLD, "ts", f"{(ref_ms - ts_ms) / 86_400_000:.1f} days in the past "
                                    f"(limit {max_past_ms / 86_400_000:g} days)")


def decode_and_validate(raw: bytes | None, catalog: Catalog, *, ref_ms: int, max_future_ms: int,
                        max_past_ms: int = DEFAULT_MAX_PAST_MS, topic_feed: str | None = None,
                        agency: str | None = None) -> Reading | Rejection:
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        return Rejection(MALFORMED, "", f"not valid JSON: {exc.msg}")
    return validate(doc, catalog, ref_ms=ref_ms, max_future_ms=max_future_ms, max_past_ms=max_past_ms,
                    topic_feed=topic_feed, agency=agency)


def decode_message(raw: bytes | None, catalog: Catalog, *, ref_ms: int, max_future_ms: int,
                   max_past_ms: int = DEFAULT_MAX_PAST_MS, topic_feed: str | None,
                   agency: str | None) -> list[Reading | Rejection]:
    """One Kafka message → verdicts: a JSON object is one reading, a JSON array carries several. `agency`: its
    header (`agency_of(record.headers)`), one for every reading of the message."""
    try:
        doc = orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        return [Rejection(MALFORMED, "", f"not valid JSON: {exc.msg}")]
    docs = doc if isinstance(doc, list) and doc else [doc]
    return [validate(d, catalog, ref_ms=ref_ms, max_future_ms=max_future_ms, max_past_ms=max_past_ms,
                     topic_feed=topic_feed, agency=agency) for d in docs]


# --- Messages the pipeline emits (all plain JSON) -------------------------------------------------

class MessageError(ValueError):
    """A message between our own processes that cannot be read (not JSON, not an object, a field missing)."""


def _checked(doc: Any, required: frozenset[str], name: str) -> Any:
    if not isinstance(doc, dict):
        raise MessageError(f"{name}: not a JSON object")
    missing = required - doc.keys()
    if missing:
        raise MessageError(f"{name}: missing {', '.join(sorted(missing))}")
    return doc


def _decoded(raw: bytes | None, name: str) -> Any:
    try:
        return orjson.loads(raw or b"")
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"{name}: not valid JSON: {exc.msg}") from exc


class DeadLetter(TypedDict):
    """Topic feeds.dlq: a rejected message, its reason and where it came from."""

    dlq_id: str
    reason: str
    field: str
    detail: str
    payload: str
    source_topic: str
    source_partition: int
    source_offset: int
    received_ms: int
    agency: NotRequired[str]  # the body that sent it (its header `agency`, the /ingest key's); '' when unknown


def dead_letter(rejection: Rejection, payload: bytes | None, *, source_topic: str, partition: int,
                offset: int, received_ms: int, dlq_id: str | None = None, agency: str = "") -> DeadLetter:
    """A dead letter. Its id is the source position when it came from Kafka, so a replay dedupes. `agency`: who
    sent it, so the contract's validity (share not dead-lettered) is charged to that body."""
    text = (payload or b"")[:65536].decode("utf-8", errors="replace")
    return {
        "dlq_id": dlq_id or f"{source_topic}:{partition}:{offset}",
        "reason": rejection.reason,
        "field": rejection.field,
        "detail": rejection.detail,
        "payload": text,
        "source_topic": source_topic,
        "source_partition": partition,
        "source_offset": offset,
        "received_ms": received_ms,
        "agency": agency,
    }


def read_dead_letter(raw: bytes | None) -> DeadLetter:
    return cast(DeadLetter, _checked(_decoded(raw, "dead letter"), frozenset(), "dead letter"))


def feed_of_dead_letter(d: Mapping[str, Any], catalog: Catalog) -> str:
    """Best effort: the feed its source topic names, else the payload's `feed` when it is a known feed, else ''."""
    topic = d.get("source_topic")
    feed = catalog.feed_for_topic(topic) if isinstance(topic, str) else None
    if feed is not None:
        return feed.id
    payload = d.get("payload")
    try:
        doc = orjson.loads(payload) if isinstance(payload, str) and payload else None
    except orjson.JSONDecodeError:
        return ""
    if isinstance(doc, list) and doc:
        doc = doc[0]
    name = doc.get("feed") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and name in catalog.feeds else ""  # never an unbounded garbage value


class WindowMessage(TypedDict):
    """Topic agg.1m (a closed window) and agg.live (an array of open ones, as they stand)."""

    feed: str
    province: str
    dims: dict[str, str]
    dims_key: str
    source_partition: int
    window_start: int
    window_end: int
    count: int
    sum: float
    min: float
    max: float
    avg: float
    last: float
    last_ts: int
    closed_ms: int
    source_topic: str
    max_offset: int


_WINDOW_REQUIRED = frozenset({"feed", "province", "window_start", "count", "sum", "min", "max"})


def window_message(*, feed: str, province: str, dims: dict[str, str], window_start_ms: int, window_s: int,
                   count: int, total: float, vmin: float, vmax: float, last: float, last_ts_ms: int,
                   closed_ms: int, source_partition: int, source_topic: str = "",
                   max_offset: int = -1) -> WindowMessage:
    """A closed 1-minute window on topic agg.1m; identity (feed, province, dims_key, window_start, source_partition).

    One series normally lives in one partition (key = province). A reading keyed by a legacy code can
    land in another partition: that partition closes its own partial window, and readers sum the
    partials (count, sum; min of min, max of max), so nothing replaces anything.
    `source_topic` and `max_offset` say where its readings are: the sink stores the window recomputed
    from the raw readings of that topic-partition once they are stored through `max_offset`.
    """
    return {
        "feed": feed, "province": province, "dims": dims, "dims_key": dims_key(dims),
        "source_partition": source_partition,
        "window_start": window_start_ms, "window_end": window_start_ms + window_s * 1000,
        "count": count, "sum": total, "min": vmin, "max": vmax, "avg": total / count if count else 0.0,
        "last": last, "last_ts": last_ts_ms, "closed_ms": closed_ms,
        "source_topic": source_topic, "max_offset": max_offset,
    }


def read_window(raw: bytes | None) -> WindowMessage:
    return cast(WindowMessage, _checked(_decoded(raw, "window"), _WINDOW_REQUIRED, "window"))


def read_live_windows(raw: bytes | None) -> list[WindowMessage]:
    """An agg.live message: an array of windows (one object is accepted too)."""
    doc = _decoded(raw, "live windows")
    return [cast(WindowMessage, _checked(d, _WINDOW_REQUIRED, "live window"))
            for d in (doc if isinstance(doc, list) else [doc])]


LATE_AMENDED, LATE_TOO_LATE = "amended", "too_late"


class LateReading(TypedDict):
    """Topic feeds.late: a valid reading that came after its window closed (see late_message)."""

    event_id: str
    feed: str
    province: str
    dims: dict[str, str]
    ts: int
    value: float
    watermark: int
    source_topic: str
    source_partition: int
    source_offset: int
    detected_ms: int
    status: str
    window_start: int
    agency: NotRequired[str]  # the body that sent it (timeliness of its contract)


def late_message(r: Reading, *, source_topic: str, partition: int, offset: int, watermark_ms: int,
                 detected_ms: int, amend: bool = True, window_s: int = 60) -> LateReading:
    """A valid reading that arrived after its window closed: stored raw and counted here. `amended`: its
    window is within the amend horizon, and the stored window is recomputed with it (sinks/recompute.py);
    `too_late`: older, not aggregated until `controlroom backfill` covers its range."""
    size = window_s * 1000
    return {
        "event_id": r.event_id, "feed": r.feed, "province": r.province, "dims": r.dims, "ts": r.ts_ms,
        "value": r.value, "watermark": watermark_ms, "source_topic": source_topic,
        "source_partition": partition, "source_offset": offset, "detected_ms": detected_ms,
        "status": LATE_AMENDED if amend else LATE_TOO_LATE, "window_start": r.ts_ms - r.ts_ms % size,
        "agency": r.agency,
    }


def read_late(raw: bytes | None) -> LateReading:
    return cast(LateReading, _checked(_decoded(raw, "late reading"), frozenset({"feed"}), "late reading"))


# --- Alerts (issue #4): one JSON event per state change, on topic `alerts` ---------------------
ALERTS_TOPIC = "alerts"
# open windows as they fill (worker → alerter), so a threshold fires within a second, not at window close
LIVE_TOPIC = "agg.live"
# rule, silence, ack and subscription commands (API → alerter, notifier); one partition, read whole at start
CONTROL_TOPIC = "alerts.control"
# every notification attempt (notifier → sink → alert_deliveries; notifier reads it back after a restart)
DELIVERIES_TOPIC = "alerts.deliveries"
ALERT_EVENTS = ("pending", "firing", "resolved", "repeat", "acknowledged", "escalated", "inhibited", "uninhibited")
SEVERITIES = ("info", "warning", "critical")


# a report submitted (API → alerter): the report deadline rules' input; key form|period|unit, compacted
REPORTS_TOPIC = "reports.submitted"


class ReportSubmitted(TypedDict):
    """Topic reports.submitted: a unit has submitted (not drafted) a report form for a period."""

    form: str
    period: str
    unit: str
    revision: int
    submitted_at: int  # epoch ms
    agency: str


def report_submitted_message(form: str, period: str, unit: str, revision: int, submitted_at_ms: int,
                             agency: str) -> ReportSubmitted:
    return {"form": form, "period": period, "unit": unit, "revision": revision, "submitted_at": submitted_at_ms,
            "agency": agency}


def report_submitted_key(doc: ReportSubmitted) -> bytes:
    """One record per report (compaction keeps the latest revision; any submission counts)."""
    return f"{doc['form']}|{doc['period']}|{doc['unit']}".encode()


def read_report_submitted(raw: bytes | None) -> ReportSubmitted:
    return cast(ReportSubmitted, _checked(_decoded(raw, "report submitted"),
                                          frozenset({"form", "period", "unit", "submitted_at"}), "report submitted"))


def fingerprint(rule_id: str, feed: str, province: str, dkey: str) -> str:
    """One alert per (rule, feed, province, dims): a condition that stays true is one alert, not many."""
    return f"{rule_id}|{feed}|{province}|{dkey}"


def alert_id_of(fingerprint_: str) -> str:
    """The alert's short stable id (URLs, idempotency keys): a hash of its fingerprint."""
    return hashlib.sha256(fingerprint_.encode()).hexdigest()[:16]


class AlertEvent(TypedDict):
    """Topic alerts: one alert state change (see alert_message)."""

    alert_id: str
    fingerprint: str
    rule_id: str
    rule_version: int
    rule_type: str
    severity: str
    event: str
    state: str
    seq: int
    feed: str
    province: str
    dims: dict[str, str]
    summary_vi: str
    summary_en: str
    value: float | None
    evidence: dict[str, Any]
    starts_at: int
    ends_at: int | None
    event_at: int
    ack: dict[str, Any] | None
    link: str
    silenced: NotRequired[bool]  # set by the alert book when the event is published
    inhibited_by: NotRequired[str | None]  # alert id of the firing alert that mutes this one (alert book)


def alert_message(*, fingerprint_: str, rule_id: str, rule_version: int, rule_type: str, severity: str,
                  event: str, state: str, seq: int, feed: str, province: str, dims: dict[str, str],
                  summary_vi: str, summary_en: str, value: float | None, evidence: dict[str, Any],
                  starts_at_ms: int, ends_at_ms: int | None, event_at_ms: int,
                  ack: dict[str, Any] | None = None, link: str = "") -> AlertEvent:
    """An alert state change. `seq` grows by one per event of a fingerprint, so (alert_id, seq) is the
    idempotency key every notification carries: a receiver can drop a repeat it has seen."""
    return {
        "alert_id": alert_id_of(fingerprint_), "fingerprint": fingerprint_,
        "rule_id": rule_id, "rule_version": rule_version, "rule_type": rule_type, "severity": severity,
        "event": event, "state": state, "seq": seq, "feed": feed, "province": province, "dims": dims,
        "summary_vi": summary_vi, "summary_en": summary_en, "value": value, "evidence": evidence,
        "starts_at": starts_at_ms, "ends_at": ends_at_ms, "event_at": event_at_ms, "ack": ack, "link": link,
    }


_ALERT_REQUIRED = frozenset({"alert_id", "seq", "event", "rule_id", "feed", "province"})


def read_alert_event(raw: bytes | None) -> AlertEvent:
    return cast(AlertEvent, _checked(_decoded(raw, "alert event"), _ALERT_REQUIRED, "alert event"))


CONTROL_KINDS = ("rule.put", "rule.delete", "silence.put", "silence.delete", "ack",
                 "subscription.put", "subscription.delete",
                 "alert.assign", "alert.comment", "incident.ack", "incident.assign", "incident.comment")


class ControlCommand(TypedDict):
    """Topic alerts.control: a command and the fields of its kind (see control_message)."""

    kind: str
    by: str
    at: int
    rule: NotRequired[dict[str, Any]]
    rule_id: NotRequired[str]
    version: NotRequired[int]
    silence: NotRequired[dict[str, Any]]
    silence_id: NotRequired[str]
    alert_id: NotRequired[str]
    comment: NotRequired[str]
    subscription: NotRequired[dict[str, Any]]
    subscription_id: NotRequired[str]
    incident_id: NotRequired[str]
    assignee: NotRequired[str]


def control_message(kind: str, *, by: str, at_ms: int, **payload: Any) -> ControlCommand:
    """A command on topic alerts.control. Payload per kind:
    rule.put {rule: <rule doc>}; rule.delete {rule_id, version};
    silence.put {silence: {id, matchers, starts_ms, ends_ms, comment}}; silence.delete {silence_id};
    ack {alert_id, comment}; subscription.put {subscription: <subscription doc>}; subscription.delete
    {subscription_id}; alert.assign {alert_id, assignee}; alert.comment {alert_id, comment};
    incident.ack {incident_id, comment}; incident.assign {incident_id, assignee}; incident.comment
    {incident_id, comment}. Every kind is idempotent, so a reader may replay the topic from the start."""
    if kind not in CONTROL_KINDS:
        raise ValueError(f"kind: must be one of {', '.join(CONTROL_KINDS)}")
    return cast(ControlCommand, {"kind": kind, "by": by, "at": at_ms, **payload})


def read_control(raw: bytes | None) -> ControlCommand:
    return cast(ControlCommand, _checked(_decoded(raw, "control command"), frozenset({"kind"}), "control command"))


# --- Deliveries: every notification attempt, on topic alerts.deliveries ---------------------------
MAX_DELIVERY_ERROR = 500


class DeliveryRecord(TypedDict):
    """One notification attempt: exactly the columns of table alert_deliveries."""

    delivery_id: str
    idempotency_key: str
    alert_id: str
    seq: int
    event: str
    subscription_id: str
    channel: str
    target: str
    attempt: int
    status: str
    http_status: int
    error: str
    attempted_at: int
    duration_ms: float


def delivery_message(*, key: str, event: AlertEvent, subscription_id: str, channel: str, target: str,
                     attempt: int, status: str, http_status: int, error: str, attempted_ms: int,
                     duration_ms: float, delivery_id: str | None = None) -> DeliveryRecord:
    """`target` as it may be stored (the notifier redacts credentials first); `http_status` 0 when none."""
    return {
        "delivery_id": delivery_id or uuid.uuid4().hex,
        "idempotency_key": key,
        "alert_id": str(event["alert_id"]),
        "seq": int(event["seq"]),
        "event": str(event["event"]),
        "subscription_id": subscription_id,
        "channel": channel,
        "target": target,
        "attempt": attempt,
        "status": status,
        "http_status": http_status if 0 <= http_status < 65536 else 0,
        "error": error[:MAX_DELIVERY_ERROR],
        "attempted_at": attempted_ms,
        "duration_ms": round(duration_ms, 3),
    }


def read_delivery(raw: bytes | None) -> DeliveryRecord:
    return cast(DeliveryRecord, _checked(_decoded(raw, "delivery"), frozenset({"idempotency_key", "status", "attempt"}),
                                         "delivery"))


# --- Incidents (issue 13): alerts of several feeds correlated into one situation, on topic `incidents` ---
INCIDENTS_TOPIC = "incidents"
# assignees and comments of alerts (the alerter turns alert.assign / alert.comment commands into these)
NOTES_TOPIC = "alerts.notes"
INCIDENT_EVENTS = ("opened", "alert_joined", "alert_resolved", "acknowledged", "assigned", "commented", "resolved")
INCIDENT_STATES = ("open", "acknowledged", "resolved")


def incident_id_of(type_id: str, scope_key: str, alert_id: str, alert_seq: int) -> str:
    """An incident's stable id: a hash of its type, province and the alert event that opened it, so the
    same inputs replayed after a crash open the same incident."""
    return hashlib.sha256(f"{type_id}|{scope_key}|{alert_id}|{alert_seq}".encode()).hexdigest()[:16]


class IncidentMember(TypedDict):
    """An alert of an incident, as the correlator knows it."""

    alert_id: str
    rule_id: str
    feed: str
    province: str
    dims: dict[str, str]
    signal: str
    severity: str
    state: str  # firing | resolved
    fired_at: int
    joined_at: int


class IncidentEvent(TypedDict):
    """Topic incidents: one incident event (see incident_message); the timeline is its events by seq."""

    incident_id: str
    seq: int
    type: str
    type_version: int
    scope: str
    province: str  # "00" for a national incident
    severity: str
    event: str
    state: str
    title_vi: str
    title_en: str
    alert_id: str  # the alert this event is about ("" for none)
    signal: str
    by: str  # who acted (ack, assign, comment); "" for the correlator
    comment: str
    assignee: str
    ack: dict[str, Any] | None
    signals: list[str]  # distinct signals firing now
    members: list[IncidentMember]
    opened_at: int
    resolved_at: int | None
    event_at: int


def incident_message(*, incident_id: str, seq: int, type_id: str, type_version: int, scope: str, province: str,
                     severity: str, event: str, state: str, title_vi: str, title_en: str, members: list[IncidentMember],
                     opened_at_ms: int, resolved_at_ms: int | None, event_at_ms: int, assignee: str = "",
                     ack: dict[str, Any] | None = None, alert_id: str = "", signal: str = "", by: str = "",
                     comment: str = "") -> IncidentEvent:
    """An incident event. (incident_id, seq) identifies it: the sink and receivers drop a repeat."""
    return {
        "incident_id": incident_id, "seq": seq, "type": type_id, "type_version": type_version, "scope": scope,
        "province": province, "severity": severity, "event": event, "state": state, "title_vi": title_vi,
        "title_en": title_en, "alert_id": alert_id, "signal": signal, "by": by, "comment": comment,
        "assignee": assignee, "ack": ack,
        "signals": sorted({m["signal"] for m in members if m["state"] == "firing"}),
        "members": members, "opened_at": opened_at_ms, "resolved_at": resolved_at_ms, "event_at": event_at_ms,
    }


def read_incident_event(raw: bytes | None) -> IncidentEvent:
    return cast(IncidentEvent, _checked(_decoded(raw, "incident event"),
                                        frozenset({"incident_id", "seq", "event", "state", "type"}), "incident event"))


class AlertNote(TypedDict):
    """Topic alerts.notes: an alert assigned to someone, or a comment on it."""

    note_id: str
    alert_id: str
    kind: str  # assigned | commented
    by: str
    at: int
    assignee: str
    comment: str


def alert_note_message(*, alert_id: str, kind: str, by: str, at_ms: int, assignee: str = "",
                       comment: str = "") -> AlertNote:
    """Its id is a hash of its content, so a command replayed gives the same note (stored once)."""
    note_id = hashlib.sha256(orjson.dumps([alert_id, kind, by, at_ms, assignee, comment])).hexdigest()[:16]
    return {"note_id": note_id, "alert_id": alert_id, "kind": kind, "by": by, "at": at_ms, "assignee": assignee,
            "comment": comment}


def read_alert_note(raw: bytes | None) -> AlertNote:
    return cast(AlertNote, _checked(_decoded(raw, "alert note"), frozenset({"note_id", "alert_id", "kind"}),
                                    "alert note"))
