"""`sellmesh topics` on a real broker: creates every topic and .dlq as laid out, and never repartitions."""

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.topics import ORDERS_COMMANDS
from sellmesh.localbroker import LocalBroker
from sellmesh.topic_admin import ensure_topics
from sellmesh.topology import every_topic, layout_of

pytestmark = pytest.mark.integration


async def partitions(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(every_topic())}
    finally:
        await admin.close()


async def test_creates_every_topic_with_its_partitions_and_a_second_run_changes_nothing() -> None:
    with LocalBroker() as broker:
        first = await ensure_topics(broker.bootstrap_servers, replication_factor=1)
        second = await ensure_topics(broker.bootstrap_servers, replication_factor=1)
        found = await partitions(broker.bootstrap_servers)
    assert first.ok and sorted(first.created) == sorted(every_topic())
    assert second.ok and second.created == [] and sorted(second.existing) == sorted(every_topic())
    assert found == {topic: layout_of(topic).partitions for topic in every_topic()}


async def test_a_topic_with_other_partitions_is_reported_not_repartitioned() -> None:
    with LocalBroker() as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(ORDERS_COMMANDS, num_partitions=2, replication_factor=1)])
        await admin.close()
        report = await ensure_topics(broker.bootstrap_servers, replication_factor=1)
        found = await partitions(broker.bootstrap_servers)
    assert not report.ok
    assert report.mismatched == {ORDERS_COMMANDS: (layout_of(ORDERS_COMMANDS).partitions, 2)}
    assert found[ORDERS_COMMANDS] == 2


async def test_topics_that_are_not_ours_are_left_alone() -> None:
    with LocalBroker() as broker:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic("someone-elses.topic", num_partitions=4, replication_factor=1)])
        await admin.close()
        first = await ensure_topics(broker.bootstrap_servers, replication_factor=1)
        second = await ensure_topics(broker.bootstrap_servers, replication_factor=1)
    assert first.ok and "someone-elses.topic" not in first.created
    assert second.ok and "someone-elses.topic" not in second.existing and second.mismatched == {}
