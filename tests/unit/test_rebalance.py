"""On revoke, the message in hand finishes first, and only finished offsets of the revoked partitions commit."""

import asyncio

import pytest
from aiokafka import TopicPartition

from sellmesh.rebalance import FinishBeforeRevoke, InHand
from tests.fakes import FakeKafkaConsumer as Consumer
from tests.fakes import kafka_record as record


class Subscriber:
    def __init__(self) -> None:
        self.consumer = Consumer()


def listener(in_hand: InHand, wait_seconds: float = 5.0) -> tuple[FinishBeforeRevoke, Consumer]:
    subscriber = Subscriber()
    revoke = FinishBeforeRevoke(in_hand, group="g", wait_seconds=wait_seconds)
    revoke.subscriber = subscriber
    return revoke, subscriber.consumer


async def test_commits_the_next_offset_after_each_finished_message_of_the_revoked_partitions() -> None:
    in_hand = InHand()
    for partition, offset in ((0, 4), (0, 5), (1, 9)):
        with in_hand.holding(record(partition, offset)):
            pass
    revoke, consumer = listener(in_hand)
    await revoke.on_partitions_revoked({TopicPartition("t", 0)})
    assert consumer.commits == [{TopicPartition("t", 0): 6}]


async def test_a_message_that_failed_is_not_committed_past() -> None:
    in_hand = InHand()
    with in_hand.holding(record(0, 4)):
        pass
    with pytest.raises(RuntimeError), in_hand.holding(record(0, 5)):
        raise RuntimeError("redis down")
    revoke, consumer = listener(in_hand)
    await revoke.on_partitions_revoked({TopicPartition("t", 0)})
    assert consumer.commits == [{TopicPartition("t", 0): 5}]


async def test_waits_for_the_message_in_hand_before_committing() -> None:
    in_hand = InHand()
    release = asyncio.Event()
    order: list[str] = []

    async def handle() -> None:
        with in_hand.holding(record(0, 7)):
            await release.wait()
            order.append("handled")

    handling = asyncio.create_task(handle())
    await asyncio.sleep(0)
    revoke, consumer = listener(in_hand)
    revoking = asyncio.create_task(revoke.on_partitions_revoked({TopicPartition("t", 0)}))
    await asyncio.sleep(0.01)
    assert consumer.commits == []
    release.set()
    await asyncio.gather(handling, revoking)
    assert order == ["handled"]
    assert consumer.commits == [{TopicPartition("t", 0): 8}]


async def test_nothing_is_committed_for_partitions_it_finished_nothing_on() -> None:
    revoke, consumer = listener(InHand())
    await revoke.on_partitions_revoked({TopicPartition("t", 3)})
    assert consumer.commits == []


async def test_with_several_consumers_each_commits_only_the_partitions_it_owns() -> None:
    in_hand = InHand()
    for partition, offset in ((0, 4), (1, 9), (2, 3)):
        with in_hand.holding(record(partition, offset)):
            pass
    first, second = Consumer(range(0, 2)), Consumer(range(2, 4))

    class Subgroup:
        consumer = None
        consumer_subgroup = (first, second)

    revoke = FinishBeforeRevoke(in_hand, group="g", wait_seconds=5.0)
    revoke.subscriber = Subgroup()
    await revoke.on_partitions_revoked({TopicPartition("t", 1), TopicPartition("t", 2)})
    assert first.commits == [{TopicPartition("t", 1): 10}]
    assert second.commits == [{TopicPartition("t", 2): 4}]


async def test_waits_until_every_message_in_hand_is_finished_not_just_the_first() -> None:
    in_hand = InHand()
    releases = [asyncio.Event(), asyncio.Event()]

    async def handle(partition: int) -> None:
        with in_hand.holding(record(partition, 1)):
            await releases[partition].wait()

    tasks = [asyncio.create_task(handle(p)) for p in (0, 1)]
    await asyncio.sleep(0)
    releases[0].set()
    await tasks[0]
    assert not await in_hand.finished(0.01)
    releases[1].set()
    await tasks[1]
    assert await in_hand.finished(0.01)
