"""Topics are created with the configs of controlroom.kafka.topic_config: read back from the broker itself."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from controlroom.catalog import Catalog
from controlroom.kafka import ensure_topics, system_topics, topic_config
from controlroom.schema import ALERTS_TOPIC, CONTROL_TOPIC, DELIVERIES_TOPIC

CHECKED = ("cleanup.policy", "retention.ms", "min.insync.replicas", "min.compaction.lag.ms")


async def described(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    """{topic: {config: value}} as the broker answers DescribeConfigs."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        answers = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        await admin.close()
    out: dict[str, dict[str, str]] = {}
    for answer in answers:
        for _code, _msg, _type, name, entries in answer.resources:
            out[name] = {e[0]: e[1] for e in entries}
    return out


async def test_topics_are_created_with_retention_compaction_and_min_isr(  # type: ignore[no-untyped-def]
        any_broker: str, broker_kind: str, make_settings, catalog: Catalog) -> None:
    settings = make_settings(kafka_bootstrap=any_broker, feed_retention_hours=48, topic_min_insync_replicas=1)
    topics = system_topics(catalog)
    await ensure_topics(settings, topics)  # every CreateTopics carries its configs: a broker refusing one fails here
    if broker_kind == "tansu":
        return  # Tansu accepts the configs; it does not enforce or describe them, Apache Kafka does (below)
    configs = await described(any_broker, topics)
    feed = catalog.topics[0]
    assert configs[feed]["cleanup.policy"] == "delete"
    assert configs[feed]["retention.ms"] == str(48 * 3_600_000)
    assert configs[CONTROL_TOPIC]["retention.ms"] == "-1"  # commands are replayed whole: never deleted
    for compacted in (ALERTS_TOPIC, DELIVERIES_TOPIC):
        assert configs[compacted]["cleanup.policy"] == "compact"
        assert configs[compacted]["min.compaction.lag.ms"] == str(48 * 3_600_000)
    for topic in topics:  # and every topic exactly as topic_config says
        expected = topic_config(settings, topic)
        assert {k: configs[topic][k] for k in expected} == expected, topic
        assert set(expected) <= set(CHECKED)
