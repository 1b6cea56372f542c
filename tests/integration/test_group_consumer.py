"""One consumer per consumer group over the real broker: every subscription of the group gets every record of
its topic, in key order and exactly once; a record one subscription left unfinished is delivered again without
the others running it twice; and what the group finished is committed on every topic it reads."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from schemas.orders import CancelOrder
from schemas.topics import HANDOFF_COMMANDS, ORDERS_COMMANDS
from sellmesh.broker import MeshBroker, make_broker, publish
from sellmesh.localbroker import LocalBroker
from sellmesh.subscriber import Dedup, Handler, RetryPolicy, Subscription, consume
from tests.builders import committed_offsets, order_command, random_tenant_id, resolve_command, unique_label
from tests.fakes import FlakyDedup, KeyOrderTracker

pytestmark = pytest.mark.integration

PARTITIONS = 3
KEYS = 6
PER_KEY = 3


class Cancellations:
    """Records the order ids of the cancel commands it handles, in order."""

    def __init__(self) -> None:
        self.seen: list[uuid.UUID] = []

    async def __call__(self, command: CancelOrder) -> None:
        self.seen.append(command.order_id)


@pytest_asyncio.fixture
async def bootstrap() -> AsyncIterator[str]:
    with LocalBroker() as local:
        admin = AIOKafkaAdminClient(bootstrap_servers=local.bootstrap_servers)
        await admin.start()
        await admin.create_topics(
            [
                NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)
                for topic in (HANDOFF_COMMANDS, ORDERS_COMMANDS)
            ]
        )
        await admin.close()
        yield local.bootstrap_servers


def new_broker(bootstrap: str, label: str) -> MeshBroker:
    return make_broker(bootstrap_servers=bootstrap, enable_idempotence=False, client_id=label)


def subscription(broker: MeshBroker, topic: str, group: str, name: str, handler: Handler, dedup: Dedup) -> Subscription:
    return Subscription(broker, topic, group, name, handler, dedup, RetryPolicy(attempts=1, base_seconds=0.01))


async def publish_all(broker: MeshBroker, keys: list[str]) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
    """PER_KEY resolve commands per key on one topic, and one cancel command per key on the other."""
    tenant = random_tenant_id()
    resolves = []
    for step in range(PER_KEY):
        for key in keys:
            command = resolve_command(tenant, key, note=str(step))
            await publish(broker, HANDOFF_COMMANDS, command, key=key)
            resolves.append(command.event_id)
    orders = []
    for _ in keys:
        cancel = order_command(CancelOrder, tenant, uuid.uuid4(), reason="changed mind")
        await publish(broker, ORDERS_COMMANDS, cancel, key=str(cancel.order_id))
        orders.append(cancel.order_id)
    return resolves, orders


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def group_state(bootstrap: str, group: str) -> tuple[int, int]:
    """(members of the group, sum of its committed offsets over both topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    partitions = [TopicPartition(t, p) for t in (HANDOFF_COMMANDS, ORDERS_COMMANDS) for p in range(PARTITIONS)]
    return len(described.groups[0][5]), sum((await committed_offsets(bootstrap, group, partitions)).values())


def keys_of_run() -> list[str]:
    return [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]


async def test_one_consumer_gives_every_subscription_of_its_group_every_record_of_its_topics(bootstrap: str) -> None:
    group = unique_label("service")
    broker = new_broker(bootstrap, group)
    first, second, cancels = KeyOrderTracker(delay=0.01), KeyOrderTracker(delay=0.01), Cancellations()
    dedup = FlakyDedup()
    consume(
        broker,
        [
            subscription(broker, HANDOFF_COMMANDS, group, "first", first, dedup),
            subscription(broker, HANDOFF_COMMANDS, group, "second", second, dedup),
            subscription(broker, ORDERS_COMMANDS, group, "cancels", cancels, dedup),
        ],
    )
    assert len(broker.subscribers) == 1
    keys = keys_of_run()
    await broker.start()
    try:
        _, orders = await publish_all(broker, keys)
        await until(lambda: first.handled + second.handled + len(cancels.seen) >= 2 * KEYS * PER_KEY + KEYS)
        await asyncio.sleep(0.3)  # anything handled twice would show up by now
        total = KEYS * PER_KEY + KEYS
        deadline = asyncio.get_running_loop().time() + 15
        while (state := await group_state(bootstrap, group))[1] < total:
            assert asyncio.get_running_loop().time() < deadline, f"finished offsets not committed: {state}"
            await asyncio.sleep(0.1)
        assert state == (1, total)
    finally:
        await broker.stop()
    expected = {key: ["0", "1", "2"] for key in keys}
    assert {key: first.seen[key] for key in keys} == expected
    assert {key: second.seen[key] for key in keys} == expected
    assert sorted(cancels.seen) == sorted(orders)
    # Each subscription marks its own work done: a mark of one never makes another skip a record.
    assert len(dedup.marked) == 2 * KEYS * PER_KEY + KEYS


async def test_a_record_one_subscription_left_unfinished_is_delivered_again_and_run_once_by_each(
    bootstrap: str,
) -> None:
    group = unique_label("unfinished")
    producer = new_broker(bootstrap, unique_label("producer"))
    await producer.connect()
    keys = keys_of_run()
    resolves, _ = await publish_all(producer, keys)
    await producer.stop()
    victim = resolves[0]
    # The first subscription's dedup lookup fails twice for the victim; the second finishes it the first time.
    broker = new_broker(bootstrap, group)
    flaky, steady = KeyOrderTracker(delay=0.01), KeyOrderTracker(delay=0.01)
    consume(
        broker,
        [
            subscription(broker, HANDOFF_COMMANDS, group, "flaky", flaky, FlakyDedup(frozenset({victim}), failures=2)),
            subscription(broker, HANDOFF_COMMANDS, group, "steady", steady, FlakyDedup()),
            subscription(broker, ORDERS_COMMANDS, group, "cancels", Cancellations(), FlakyDedup()),
        ],
    )
    await broker.start()
    try:
        await until(lambda: flaky.handled >= KEYS * PER_KEY and steady.handled >= KEYS * PER_KEY)
        await asyncio.sleep(0.3)
    finally:
        await broker.stop()
    expected = {key: ["0", "1", "2"] for key in keys}
    assert {key: flaky.seen[key] for key in keys} == expected
    assert {key: steady.seen[key] for key in keys} == expected


async def test_several_consumers_per_group_run_each_topic_of_the_group(bootstrap: str) -> None:
    """FastStream runs several consumers with manual commits only for one topic, so each topic gets its own."""
    group = unique_label("workers")
    broker = new_broker(bootstrap, group)
    resolves, cancels = KeyOrderTracker(delay=0.01), Cancellations()
    dedup = FlakyDedup()
    consume(
        broker,
        [
            subscription(broker, HANDOFF_COMMANDS, group, "resolves", resolves, dedup),
            subscription(broker, ORDERS_COMMANDS, group, "cancels", cancels, dedup),
        ],
        consumers=2,
    )
    assert len(broker.subscribers) == 2
    keys = keys_of_run()
    await broker.start()
    try:
        _, orders = await publish_all(broker, keys)
        await until(lambda: resolves.handled >= KEYS * PER_KEY and len(cancels.seen) >= KEYS)
        await asyncio.sleep(0.3)
    finally:
        await broker.stop()
    assert {key: resolves.seen[key] for key in keys} == {key: ["0", "1", "2"] for key in keys}
    assert sorted(cancels.seen) == sorted(orders)


def test_a_consumer_runs_one_group_with_distinct_names() -> None:
    broker = new_broker("localhost:1", "unused")
    dedup = FlakyDedup()
    tracker = KeyOrderTracker()
    with pytest.raises(ValueError, match="one group"):
        consume(
            broker,
            [
                subscription(broker, HANDOFF_COMMANDS, "a", "one", tracker, dedup),
                subscription(broker, ORDERS_COMMANDS, "b", "two", tracker, dedup),
            ],
        )
    with pytest.raises(ValueError, match="distinct names"):
        consume(
            broker,
            [
                subscription(broker, HANDOFF_COMMANDS, "a", "one", tracker, dedup),
                subscription(broker, ORDERS_COMMANDS, "a", "one", tracker, dedup),
            ],
        )
    with pytest.raises(ValueError, match="at least one"):
        consume(broker, [])
    assert not broker.subscribers
