"""Several consumers per subscription: partitions are handled at the same time, each key still in order, once."""

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from redis.asyncio import Redis

from schemas.topics import HANDOFF_COMMANDS
from sellmesh.broker import make_broker, publish
from sellmesh.localbroker import LocalBroker
from sellmesh.rebalance import consumers_of
from sellmesh.subscriber import RedisDedup, RetryPolicy, subscribe
from tests.builders import random_tenant_id, resolve_command, unique_label
from tests.fakes import KeyOrderTracker

pytestmark = pytest.mark.integration

PARTITIONS = 4
CONSUMERS = 2
KEYS = 24
PER_KEY = 3


async def test_partitions_are_handled_concurrently_in_key_order_exactly_once(redis_url: str) -> None:
    tracker = KeyOrderTracker()
    redis: Redis = Redis.from_url(redis_url, decode_responses=True)
    with LocalBroker() as local:
        admin = AIOKafkaAdminClient(bootstrap_servers=local.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(HANDOFF_COMMANDS, num_partitions=PARTITIONS, replication_factor=1)])
        await admin.close()
        broker = make_broker(
            bootstrap_servers=local.bootstrap_servers,
            enable_idempotence=False,
            client_id="concurrency",
        )
        subscribe(
            broker,
            HANDOFF_COMMANDS,
            group=unique_label("concurrency"),
            name="tracker",
            handler=tracker,
            dedup=RedisDedup(redis, ttl_seconds=600),
            retry=RetryPolicy(attempts=1, base_seconds=0.01),
            consumers=CONSUMERS,
        )
        await broker.start()
        try:
            [subscriber] = broker.subscribers
            assert len(consumers_of(subscriber)) == CONSUMERS
            tenant = random_tenant_id()
            keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
            for step in range(PER_KEY):
                for key in keys:
                    await publish(broker, HANDOFF_COMMANDS, resolve_command(tenant, key, note=str(step)), key=key)
            deadline = asyncio.get_running_loop().time() + 30
            while tracker.handled < KEYS * PER_KEY:
                assert asyncio.get_running_loop().time() < deadline, "not every message was handled"
                await asyncio.sleep(0.05)
        finally:
            await broker.stop()
            await redis.aclose()
    assert {key: tracker.seen[key] for key in keys} == {key: ["0", "1", "2"] for key in keys}
    assert tracker.most_in_hand == CONSUMERS
