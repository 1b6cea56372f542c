"""A batch consumer's commits: finished offsets only, of owned partitions, at most once an interval, none lost to a
failed commit, and everything at once on a stop."""

import asyncio

import pytest
from aiokafka import TopicPartition

from sellmesh import commits as commits_module
from sellmesh.commits import Commits
from sellmesh.rebalance import FinishBeforeRevoke, InHand
from tests.fakes import FakeKafkaConsumer, kafka_record


def tp(partition: int) -> TopicPartition:
    return TopicPartition("t", partition)


class Batches:
    """A committer over a fake consumer; `done` finishes records (partition, offset) and ends their batch."""

    def __init__(self, *, interval_seconds: float, consumer: FakeKafkaConsumer | None = None) -> None:
        self.in_hand = InHand()
        self.consumer = consumer or FakeKafkaConsumer()
        self.commits = Commits(self.in_hand, group="g", interval_seconds=interval_seconds)

    def finish(self, *records: tuple[int, int]) -> None:
        for partition, offset in records:
            with self.in_hand.holding(kafka_record(partition, offset)):
                pass

    async def done(self, *records: tuple[int, int]) -> None:
        self.finish(*records)
        await self.commits.after_batch(self.consumer)


async def test_the_first_batch_commits_at_once_and_later_ones_share_a_commit_after_the_interval() -> None:
    batches = Batches(interval_seconds=0.2)
    await batches.done((0, 0))
    assert batches.consumer.commits == [{tp(0): 1}]
    for offset in (1, 2, 3):
        await batches.done((0, offset), (1, offset))
    assert len(batches.consumer.commits) == 1  # waiting out the interval
    await asyncio.sleep(0.3)
    assert batches.consumer.commits[1:] == [{tp(0): 4, tp(1): 4}]


async def test_only_finished_offsets_of_owned_partitions_that_the_group_lacks_are_committed() -> None:
    batches = Batches(interval_seconds=0, consumer=FakeKafkaConsumer(partitions=range(2)))
    await batches.done((0, 5), (3, 9))  # partition 3 is not this consumer's any more
    await batches.done()  # nothing new: no second commit
    assert batches.consumer.commits == [{tp(0): 6}]


async def test_a_failed_commit_keeps_its_offsets_for_the_next_one() -> None:
    batches = Batches(interval_seconds=0.1)
    batches.consumer.failing = True
    await batches.done((0, 0))
    assert batches.consumer.commits == []
    await batches.done((0, 1))  # within the interval: scheduled
    batches.consumer.failing = False
    await asyncio.sleep(0.25)
    assert batches.consumer.commits == [{tp(0): 2}]


async def test_a_stop_commits_at_once_and_every_later_batch_commits_as_it_ends() -> None:
    batches = Batches(interval_seconds=60)
    await batches.done((0, 0))
    await batches.done((0, 1))
    await batches.commits.stop(batches.consumer)
    assert batches.consumer.commits == [{tp(0): 1}, {tp(0): 2}]
    await batches.done((0, 2))  # the batch in hand when the stop began
    assert batches.consumer.commits[-1] == {tp(0): 3}


async def test_a_revoked_partition_is_committed_by_the_revoke_and_left_to_its_next_owner() -> None:
    batches = Batches(interval_seconds=60)
    revoke = FinishBeforeRevoke(batches.in_hand, group="g", wait_seconds=1)
    revoke.subscriber = type("Subscriber", (), {"consumer": batches.consumer})()
    revoke.on_revoked.append(batches.commits.forget)
    await batches.done((0, 0))
    await batches.done((0, 1), (1, 7))  # pending: the interval has not passed
    await revoke.on_partitions_revoked({tp(0)})
    batches.consumer.owned = {tp(1), tp(2)}
    await batches.commits.stop(batches.consumer)
    assert batches.consumer.commits == [{tp(0): 1}, {tp(0): 2}, {tp(1): 8}]


async def test_a_stop_does_not_wait_for_a_commit_that_never_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable(FakeKafkaConsumer):
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            await asyncio.Event().wait()  # what aiokafka does while the group coordinator is gone

    monkeypatch.setattr(commits_module, "STOP_COMMIT_SECONDS", 0.1)
    batches = Batches(interval_seconds=60, consumer=Unreachable())
    batches.finish((0, 0))
    # Bounded: the stop that closes the consumer comes next.
    await asyncio.wait_for(batches.commits.stop(batches.consumer), 2)


async def test_a_delayed_commit_cancelled_by_a_stop_before_it_ran_does_not_block_later_ones() -> None:
    batches = Batches(interval_seconds=0.1)
    await batches.done((0, 0))
    await batches.done((0, 1))  # schedules the delayed commit, which has not run yet
    await batches.commits.stop(batches.consumer)
    batches.commits.start()  # the subscriber starts again
    await batches.done((0, 2))
    await batches.done((0, 3))
    await asyncio.sleep(0.25)
    assert batches.consumer.commits[-1] == {tp(0): 4}


async def test_a_batch_that_ends_while_the_delayed_commit_is_in_flight_is_committed_too() -> None:
    class Slow(FakeKafkaConsumer):
        def __init__(self) -> None:
            super().__init__()
            self.in_flight = asyncio.Event()
            self.answer = asyncio.Event()

        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            self.in_flight.set()
            await self.answer.wait()
            await super().commit(offsets)

    consumer = Slow()
    consumer.answer.set()
    batches = Batches(interval_seconds=0.1, consumer=consumer)
    await batches.done((0, 0))  # commits at once
    consumer.answer.clear()
    consumer.in_flight.clear()
    await batches.done((0, 1))  # the delayed commit
    await asyncio.wait_for(consumer.in_flight.wait(), 1)
    await batches.done((0, 2))  # ends while that commit waits for the broker: the last batch of a quiet spell
    consumer.answer.set()
    await asyncio.sleep(0.3)
    assert consumer.commits[-1] == {tp(0): 3}
