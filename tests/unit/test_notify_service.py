"""The notifier's state handling without a broker: control commands, delivery records, batch planning."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from aiokafka import TopicPartition

from controlroom.catalog import Catalog
from controlroom.errors import ConfigError
from controlroom.schema import alert_message, control_message
from controlroom.settings import Settings
from notify.service import Notifier


@dataclass
class Rec:
    offset: int
    value: bytes


def put(sid: str, **doc: object) -> bytes:
    return orjson.dumps(control_message("subscription.put", by="t", at_ms=0,
                                        subscription={"id": sid, "name": sid, "channel": "webhook",
                                                      "target": f"http://x.vn/{sid}", **doc}))


def event(n: int, kind: str = "firing") -> bytes:
    e = alert_message(fingerprint_=f"r|water_level|01|{n}", rule_id="r", rule_version=1, rule_type="threshold",
                      severity="critical", event=kind, state=kind, seq=1, feed="water_level", province="01",
                      dims={}, summary_vi="vi", summary_en="en", value=1.0, evidence={}, starts_at_ms=0,
                      ends_at_ms=None, event_at_ms=0)
    return orjson.dumps({**e, "silenced": False})


def notifier(catalog: Catalog) -> Notifier:
    return Notifier(Settings(notify_signing_key="k"), catalog, channels={})  # type: ignore[arg-type]


def test_refuses_to_start_without_a_signing_key(catalog: Catalog) -> None:
    for key in (None, ""):
        with pytest.raises(ConfigError, match="NOTIFY_SIGNING_KEY is not set"):
            Notifier(Settings(notify_signing_key=key), catalog, channels={})  # type: ignore[arg-type]


def test_control_commands(catalog: Catalog) -> None:
    n = notifier(catalog)
    for raw in (put("a"), put("b", tier="escalation"), put("bad", filters={"feeds": ["nope"]}),
                orjson.dumps(control_message("subscription.put", by="t", at_ms=0, subscription={"name": "no id"})),
                orjson.dumps(control_message("rule.delete", by="t", at_ms=0, rule_id="r", version=1)),
                b"not json", b"[]", put("a", enabled=False),
                orjson.dumps(control_message("subscription.delete", by="t", at_ms=0, subscription_id="b")),
                orjson.dumps(control_message("subscription.delete", by="t", at_ms=0, subscription_id="never"))):
        n.apply_control(raw)
    assert list(n.subscriptions) == ["a"] and n.subscriptions["a"].enabled is False


def test_delivery_records_and_planning(catalog: Catalog) -> None:
    n = notifier(catalog)
    for raw in (put("a"), put("b")):
        n.apply_control(raw)
    first = orjson.loads(event(1))["alert_id"]
    for status, attempt, sid in (("retry", 1, "a"), ("delivered", 2, "a"), ("retry", 1, "b"), ("retry", 2, "b")):
        n.apply_delivery(orjson.dumps({"idempotency_key": f"{first}:1:{sid}", "status": status, "attempt": attempt}))
    n.apply_delivery(b"{}")
    assert list(n.finished) == [f"{first}:1:a"] and n.attempted == {f"{first}:1:b": 2}
    tp = TopicPartition("alerts", 0)
    jobs = n.plan({tp: [Rec(10, event(1)), Rec(11, event(2, "pending")), Rec(12, b"garbage"), Rec(13, event(3))]})
    third = orjson.loads(event(3))["alert_id"]
    assert [(j.key, j.offset) for j in jobs] == [(f"{first}:1:b", 10), (f"{third}:1:a", 13), (f"{third}:1:b", 13)]
    assert (n.stats.skipped, n.stats.malformed) == (1, 1)
