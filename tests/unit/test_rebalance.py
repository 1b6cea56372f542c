"""On revoke, the message in hand finishes first, and only finished offsets of the revoked partitions commit."""

import asyncio
from typing import cast

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from faststream.exceptions import NackMessage
from faststream.kafka.annotations import KafkaMessage

from sellmesh.rebalance import FinishBeforeRevoke, InHand
from sellmesh.subscriber import _in_order, _one_at_a_time
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


async def test_a_revoke_mid_batch_waits_for_the_record_in_hand_and_leaves_the_rest_to_the_next_owner() -> None:
    """The record after the one in hand starts in the same step as that one finishes: the revoke must not take
    the moment between them for idle, and the batch must stop there, or both owners run the rest at once."""
    in_hand = InHand()
    release = asyncio.Event()
    ran: list[int] = []

    async def finish(one: ConsumerRecord[bytes, bytes]) -> bool:
        with in_hand.holding(one):
            ran.append(one.offset)
            if one.offset == 10:
                await release.wait()
            else:
                await asyncio.sleep(0.01)
        return True

    batch = asyncio.create_task(_in_order([record(0, 10), record(0, 11), record(0, 12)], finish, in_hand))
    await asyncio.sleep(0)
    revoke, consumer = listener(in_hand)
    revoking = asyncio.create_task(revoke.on_partitions_revoked({TopicPartition("t", 0)}))
    await asyncio.sleep(0.01)
    release.set()
    await revoking
    assert consumer.commits == [{TopicPartition("t", 0): 11}]
    assert await batch is None  # stopped, not unfinished: a revoked partition is not sought back
    assert ran == [10]  # 11 and 12 are the next owner's, from the committed offset


async def test_a_partition_assigned_again_after_its_revoke_is_handled_again() -> None:
    in_hand = InHand()
    revoke, _ = listener(in_hand)
    await revoke.on_partitions_revoked({TopicPartition("t", 0)})
    await revoke.on_partitions_assigned({TopicPartition("t", 0)})
    ran: list[int] = []

    async def finish(one: ConsumerRecord[bytes, bytes]) -> bool:
        with in_hand.holding(one):
            ran.append(one.offset)
        return True

    assert await _in_order([record(0, 3), record(0, 4)], finish, in_hand) is None
    assert ran == [3, 4]


class Delivered:
    """What FastStream hands a one-at-a-time consumer's handler: the record, as `raw_message`."""

    def __init__(self, one: ConsumerRecord[bytes, bytes]) -> None:
        self.raw_message = one


async def test_with_several_consumers_a_record_fetched_before_its_revoke_is_left_to_the_next_owner() -> None:
    """FastStream handed the record over before the revoke began and the handler ran after it: run here too, it
    would also run at the next owner, which starts from the offset the revoke committed. It is rewound, not
    acked (an ack commits past it), and never run here."""
    in_hand = InHand()
    ran: list[int] = []

    async def finish(one: ConsumerRecord[bytes, bytes]) -> bool:
        with in_hand.holding(one):
            ran.append(one.offset)
        return True

    on_message = _one_at_a_time(finish, in_hand)
    await on_message(cast(KafkaMessage, Delivered(record(0, 4))))
    revoke, consumer = listener(in_hand)
    await revoke.on_partitions_revoked({TopicPartition("t", 0)})
    with pytest.raises(NackMessage):
        await on_message(cast(KafkaMessage, Delivered(record(0, 5))))
    await on_message(cast(KafkaMessage, Delivered(record(1, 8))))  # a partition it keeps runs on
    assert ran == [4, 8]
    assert consumer.commits == [{TopicPartition("t", 0): 5}]


async def test_a_batch_starts_no_record_past_its_deadline_and_hands_back_the_first_not_started() -> None:
    """A partition's records run one after another; one waiting out an outage must not carry its batch past the
    poll interval that keeps the consumer in its group. What was not started is fetched again."""
    in_hand = InHand()
    ran: list[int] = []

    async def finish(one: ConsumerRecord[bytes, bytes]) -> bool:
        with in_hand.holding(one):
            ran.append(one.offset)
            await asyncio.sleep(0.05)  # waiting out a database failover, in short
        return True

    start_by = asyncio.get_running_loop().time() + 0.08
    assert await _in_order([record(0, n) for n in range(5)], finish, in_hand, start_by=start_by) == 2
    assert ran == [0, 1]
    assert in_hand.done == {TopicPartition("t", 0): 1}
