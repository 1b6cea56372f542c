"""On revoke, the message in hand finishes first, and only finished offsets of the revoked partitions commit."""

import asyncio

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from sellmesh.rebalance import FinishBeforeRevoke, InHand


class Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class Subscriber:
    def __init__(self) -> None:
        self.consumer = Consumer()


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


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
