"""Batches of the subscriber wrapper over the real broker: partitions at once, each key in order, exactly once,
a record left unfinished delivered again without losing the rest of its batch, and finished batches committed
(at most once an interval, and at once on a stop)."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAuthorizationFailedError
from aiokafka.partitioner import murmur2

from schemas.handoff import ResolveHandoff
from schemas.topics import HANDOFF_COMMANDS
from sellmesh import subscriber as subscriber_module
from sellmesh.broker import MeshBroker, envelope_headers, make_broker, publish
from sellmesh.localbroker import LocalBroker
from sellmesh.subscriber import RetryPolicy, subscribe
from tests.builders import committed_offsets, random_tenant_id, resolve_command, unique_label
from tests.fakes import FlakyDedup, KeyOrderTracker

pytestmark = pytest.mark.integration

PARTITIONS = 4
KEYS = 16
PER_KEY = 3


@pytest_asyncio.fixture
async def bootstrap() -> AsyncIterator[str]:
    with LocalBroker() as local:
        admin = AIOKafkaAdminClient(bootstrap_servers=local.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(HANDOFF_COMMANDS, num_partitions=PARTITIONS, replication_factor=1)])
        await admin.close()
        yield local.bootstrap_servers


def subscribed(
    bootstrap: str,
    group: str,
    tracker: KeyOrderTracker,
    dedup: FlakyDedup,
    *,
    commit_interval_ms: int = 200,
    client_id: str | None = None,
    session_timeout_ms: int = 10_000,
) -> MeshBroker:
    broker = make_broker(bootstrap_servers=bootstrap, enable_idempotence=False, client_id=client_id or group)
    subscribe(
        broker,
        HANDOFF_COMMANDS,
        group=group,
        name="tracker",
        handler=tracker,
        dedup=dedup,
        retry=RetryPolicy(attempts=1, base_seconds=0.01),
        commit_interval_ms=commit_interval_ms,
        session_timeout_ms=session_timeout_ms,
    )
    return broker


async def publish_steps(broker: MeshBroker, keys: list[str]) -> list[ResolveHandoff]:
    tenant = random_tenant_id()
    sent = []
    for step in range(PER_KEY):
        for key in keys:
            command = resolve_command(tenant, key, note=str(step))
            await publish(broker, HANDOFF_COMMANDS, command, key=key)
            sent.append(command)
    return sent


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def committed(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    return await committed_offsets(bootstrap, group, [TopicPartition(HANDOFF_COMMANDS, p) for p in range(PARTITIONS)])


async def test_one_consumer_handles_partitions_at_once_each_key_in_order_exactly_once(bootstrap: str) -> None:
    tracker = KeyOrderTracker(delay=0.01)
    group = unique_label("batches")
    broker = subscribed(bootstrap, group, tracker, FlakyDedup())
    keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
    await broker.connect()
    # Published before the consumer joins, so its first fetches hold records of several partitions.
    await publish_steps(broker, keys)
    await broker.start()
    try:
        await until(lambda: tracker.handled >= KEYS * PER_KEY)
        await asyncio.sleep(0.3)  # anything handled twice would show up by now
    finally:
        await broker.stop()
    assert {key: tracker.seen[key] for key in keys} == {key: ["0", "1", "2"] for key in keys}
    assert 1 < tracker.most_in_hand <= PARTITIONS


async def test_a_record_left_unfinished_is_delivered_again_and_the_rest_of_the_batch_is_not_lost(
    bootstrap: str,
) -> None:
    tracker = KeyOrderTracker(delay=0.01)
    group = unique_label("unfinished")
    keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
    producer = subscribed(bootstrap, unique_label("producer"), KeyOrderTracker(delay=0.01), FlakyDedup())
    await producer.connect()
    sent = await publish_steps(producer, keys)
    await producer.stop()
    # The first step of one key cannot be finished twice in a row; its later steps must wait for it.
    victim = sent[0]
    broker = subscribed(bootstrap, group, tracker, FlakyDedup(frozenset({victim.event_id}), failures=2))
    await broker.start()
    try:
        await until(lambda: tracker.handled >= KEYS * PER_KEY)
        await asyncio.sleep(0.3)
    finally:
        await broker.stop()
    assert {key: tracker.seen[key] for key in keys} == {key: ["0", "1", "2"] for key in keys}


async def test_finished_batches_are_committed_and_a_restart_redelivers_nothing(bootstrap: str) -> None:
    tracker = KeyOrderTracker(delay=0.01)
    group = unique_label("commits")
    keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
    broker = subscribed(bootstrap, group, tracker, FlakyDedup())
    await broker.start()
    try:
        await publish_steps(broker, keys)
        await until(lambda: tracker.handled >= KEYS * PER_KEY)
        # Each batch commits once it is finished.
        deadline = asyncio.get_running_loop().time() + 15
        while sum((await committed(bootstrap, group)).values()) < KEYS * PER_KEY:
            assert asyncio.get_running_loop().time() < deadline, "finished offsets were not committed"
            await asyncio.sleep(0.1)
    finally:
        await broker.stop()
    again = KeyOrderTracker(delay=0.01)
    # A fresh dedup: only the committed offsets stand between a restart and handling everything twice.
    restarted = subscribed(bootstrap, group, again, FlakyDedup())
    await restarted.start()
    try:
        await asyncio.sleep(1.0)
    finally:
        await restarted.stop()
    assert again.handled == 0


async def test_batches_finishing_within_an_interval_share_one_commit(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[dict[TopicPartition, int]] = []
    commit = AIOKafkaConsumer.commit

    async def counted(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int] | None = None) -> None:
        commits.append(dict(offsets or {}))
        await commit(consumer, offsets)

    monkeypatch.setattr(AIOKafkaConsumer, "commit", counted)
    tracker = KeyOrderTracker(delay=0.0)
    group = unique_label("interval")
    broker = subscribed(bootstrap, group, tracker, FlakyDedup(), commit_interval_ms=1000)
    await broker.start()
    started = asyncio.get_running_loop().time()
    try:
        tenant = random_tenant_id()
        # One record at a time, each its own batch: 20 batches in about a second.
        for step in range(20):
            await publish(broker, HANDOFF_COMMANDS, resolve_command(tenant, "one-key", note=str(step)), key="one-key")
            await until(lambda step=step: tracker.handled > step)  # type: ignore[misc]
            await asyncio.sleep(0.05)
        # The last batches' offsets wait out the interval, then go in one commit.
        await until(lambda: bool(commits) and max(commits[-1].values()) >= 20, within=5)
        assert sum((await committed(bootstrap, group)).values()) == 20
        elapsed = asyncio.get_running_loop().time() - started
    finally:
        await broker.stop()
    assert tracker.seen["one-key"] == [str(step) for step in range(20)]
    # One commit a second at most (and the first batch's at once), where each batch used to commit.
    assert 1 <= len(commits) <= elapsed + 2 < 20


async def test_a_stop_commits_what_finished_without_waiting_out_the_interval(bootstrap: str) -> None:
    tracker = KeyOrderTracker(delay=0.01)
    group = unique_label("stop-commits")
    keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
    # An interval far longer than the test: only the first batch would commit before the stop.
    broker = subscribed(bootstrap, group, tracker, FlakyDedup(), commit_interval_ms=10_000)
    await broker.start()
    try:
        await publish_steps(broker, keys)
        await until(lambda: tracker.handled >= KEYS * PER_KEY)
    finally:
        await broker.stop()
    # What the group holds is what a restart starts from (the test above shows a restart redelivers nothing).
    assert sum((await committed(bootstrap, group)).values()) == KEYS * PER_KEY


def key_in_partition(partition: int) -> str:
    """A key the producer's partitioner (murmur2, as Kafka's) puts in `partition` of the topic."""
    while True:
        key = f"conv-{uuid.uuid4().hex[:8]}"
        if (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS == partition:
            return key


async def test_a_consumer_joining_mid_batch_takes_over_without_a_record_run_twice(bootstrap: str) -> None:
    """The first consumer is mid-batch on a partition when the second joins and takes that partition: the revoke
    waits for the record in hand and stops the batch there, so the partition moves at the offset it reached and
    no record is run by both at once (their dedup, shared as Redis is, only stops a run after another finished)."""
    steps = 30
    dedup = FlakyDedup()
    first, second = KeyOrderTracker(delay=0.1), KeyOrderTracker(delay=0.1)
    group = unique_label("takeover")
    # Round-robin over members in id order (client id first): the second consumer gets partitions 1 and 3.
    key = key_in_partition(1)

    a, b = (
        subscribed(bootstrap, group, tracker, dedup, client_id=f"{client}-{group}", session_timeout_ms=6000)
        for tracker, client in ((first, "a"), (second, "b"))
    )
    await a.connect()
    tenant = random_tenant_id()
    for step in range(steps):
        await publish(a, HANDOFF_COMMANDS, resolve_command(tenant, key, note=str(step)), key=key)
    await a.start()
    try:
        await until(lambda: first.handled > 0)
        await b.start()  # joins while the first consumer's batch is in hand: a rebalance mid-batch
        await until(lambda: first.handled + second.handled >= steps, within=60)
        await asyncio.sleep(1.0)  # anything run twice would show up by now
    finally:
        await b.stop()
        await a.stop()
    assert 0 < len(first.seen[key]) < steps  # the partition did move mid-batch
    # The second took over exactly where the first had stopped: every step once, in order.
    assert first.seen[key] + second.seen[key] == [str(step) for step in range(steps)]


@pytest.mark.parametrize("value", [b"\xff\x01\x02", None], ids=["binary", "null"])
async def test_a_header_that_is_not_text_loses_nothing_of_its_batch(bootstrap: str, value: bytes | None) -> None:
    # Tracing libraries and foreign producers add binary headers; FastStream's own parser read every header as
    # strict UTF-8 and skipped the whole batch when one failed, and later commits moved past it.
    tracker = KeyOrderTracker(delay=0.0)
    group = unique_label("headers")
    broker = subscribed(bootstrap, group, tracker, FlakyDedup())
    await broker.connect()
    tenant = random_tenant_id()
    keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key in keys:
            command = resolve_command(tenant, key, note="0")
            headers = [(name, text.encode()) for name, text in envelope_headers(command).items()]
            await producer.send_and_wait(
                HANDOFF_COMMANDS,
                command.model_dump_json().encode(),
                key=key.encode(),
                headers=[*headers, ("trace-context", value)] if key == keys[0] else headers,
            )
    finally:
        await producer.stop()
    await broker.start()
    try:
        await until(lambda: tracker.handled >= KEYS)
        await asyncio.sleep(0.3)
    finally:
        await broker.stop()
    assert {key: tracker.seen[key] for key in keys} == {key: ["0"] for key in keys}


async def test_a_failed_fetch_after_the_first_record_loses_not_that_record(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # aiokafka raises an error it stored for a partition (authorization, a corrupt or oversized record) from the
    # `getmany` that drains a batch: the record `getone` already took must still be handled.
    failures = iter([True])
    real_getmany = AIOKafkaConsumer.getmany

    async def getmany_failing_once(self: AIOKafkaConsumer, *partitions: TopicPartition, **kwargs: Any) -> Any:
        if next(failures, False):
            raise TopicAuthorizationFailedError
        return await real_getmany(self, *partitions, **kwargs)

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany_failing_once)
    tracker = KeyOrderTracker(delay=0.0)
    group = unique_label("getmany")
    broker = subscribed(bootstrap, group, tracker, FlakyDedup())
    keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
    await broker.connect()
    await publish_steps(broker, keys)
    await broker.start()
    try:
        await until(lambda: tracker.handled >= KEYS * PER_KEY)
        await asyncio.sleep(0.3)
    finally:
        await broker.stop()
    assert {key: tracker.seen[key] for key in keys} == {key: ["0", "1", "2"] for key in keys}


async def test_a_batch_cut_at_its_deadline_leaves_nothing_lost_or_run_twice(
    bootstrap: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In production a batch stops starting records after 120 s (records waiting out an outage one after
    # another); here after a fraction of a second, so most batches are cut and fetched again.
    monkeypatch.setattr(subscriber_module, "BATCH_START_WITHIN_SECONDS", 0.1)
    tracker = KeyOrderTracker(delay=0.05)
    group = unique_label("deadline")
    broker = subscribed(bootstrap, group, tracker, FlakyDedup())
    keys = [f"conv-{i}-{uuid.uuid4().hex[:6]}" for i in range(KEYS)]
    await broker.connect()
    await publish_steps(broker, keys)
    await broker.start()
    try:
        await until(lambda: tracker.handled >= KEYS * PER_KEY, within=60.0)
        await asyncio.sleep(0.5)
    finally:
        await broker.stop()
    assert {key: tracker.seen[key] for key in keys} == {key: ["0", "1", "2"] for key in keys}
