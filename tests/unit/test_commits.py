"""A batch consumer's commits: finished offsets only, of owned partitions, at most once an interval, none lost to a
failed commit, and everything at once on a stop."""

import asyncio

import pytest
from aiokafka import ConsumerRecord, TopicPartition

from sellmesh import commits as commits_module
from sellmesh.commits import Commits
from sellmesh.rebalance import FinishBeforeRevoke, InHand


class Consumer:
    def __init__(self, partitions: range = range(4)) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.owned = {TopicPartition("t", p) for p in partitions}
        self.failing = False

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.failing:
            raise ConnectionError("broker gone")
        self.commits.append(dict(offsets))


def tp(partition: int) -> TopicPartition:
    return TopicPartition("t", partition)


def finish(in_hand: InHand, partition: int, offset: int) -> None:
    with in_hand.holding(ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, [])):
        pass


async def test_the_first_batch_commits_at_once_and_later_ones_share_a_commit_after_the_interval() -> None:
    in_hand, consumer = InHand(), Consumer()
    commits = Commits(in_hand, group="g", interval_seconds=0.2)
    finish(in_hand, 0, 0)
    await commits.after_batch(consumer)
    assert consumer.commits == [{tp(0): 1}]
    for offset in (1, 2, 3):
        finish(in_hand, 0, offset)
        finish(in_hand, 1, offset)
        await commits.after_batch(consumer)
    assert len(consumer.commits) == 1  # waiting out the interval
    await asyncio.sleep(0.3)
    assert consumer.commits[1:] == [{tp(0): 4, tp(1): 4}]


async def test_only_finished_offsets_of_owned_partitions_that_the_group_lacks_are_committed() -> None:
    in_hand, consumer = InHand(), Consumer(partitions=range(2))
    commits = Commits(in_hand, group="g", interval_seconds=0)
    finish(in_hand, 0, 5)
    finish(in_hand, 3, 9)  # not this consumer's any more
    await commits.after_batch(consumer)
    await commits.after_batch(consumer)  # nothing new: no second commit
    assert consumer.commits == [{tp(0): 6}]


async def test_a_failed_commit_keeps_its_offsets_for_the_next_one() -> None:
    in_hand, consumer = InHand(), Consumer()
    commits = Commits(in_hand, group="g", interval_seconds=0.1)
    finish(in_hand, 0, 0)
    consumer.failing = True
    await commits.after_batch(consumer)
    assert consumer.commits == []
    finish(in_hand, 0, 1)
    await commits.after_batch(consumer)  # within the interval: scheduled
    consumer.failing = False
    await asyncio.sleep(0.25)
    assert consumer.commits == [{tp(0): 2}]


async def test_a_stop_commits_at_once_and_every_later_batch_commits_as_it_ends() -> None:
    in_hand, consumer = InHand(), Consumer()
    commits = Commits(in_hand, group="g", interval_seconds=60)
    finish(in_hand, 0, 0)
    await commits.after_batch(consumer)
    finish(in_hand, 0, 1)
    await commits.after_batch(consumer)
    await commits.stop(consumer)
    assert consumer.commits == [{tp(0): 1}, {tp(0): 2}]
    finish(in_hand, 0, 2)  # the batch in hand when the stop began
    await commits.after_batch(consumer)
    assert consumer.commits[-1] == {tp(0): 3}


async def test_a_revoked_partition_is_committed_by_the_revoke_and_left_to_its_next_owner() -> None:
    in_hand, consumer = InHand(), Consumer()
    commits = Commits(in_hand, group="g", interval_seconds=60)
    revoke = FinishBeforeRevoke(in_hand, group="g", wait_seconds=1)
    revoke.subscriber = type("Subscriber", (), {"consumer": consumer})()
    revoke.on_revoked.append(commits.forget)
    finish(in_hand, 0, 0)
    await commits.after_batch(consumer)
    finish(in_hand, 0, 1)
    finish(in_hand, 1, 7)
    await commits.after_batch(consumer)  # pending: the interval has not passed
    await revoke.on_partitions_revoked({tp(0)})
    consumer.owned = {tp(1), tp(2)}
    await commits.stop(consumer)
    assert consumer.commits == [{tp(0): 1}, {tp(0): 2}, {tp(1): 8}]


async def test_a_stop_does_not_wait_for_a_commit_that_never_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    class Unreachable(Consumer):
        async def commit(self, offsets: dict[TopicPartition, int]) -> None:
            await asyncio.Event().wait()  # what aiokafka does while the group coordinator is gone

    monkeypatch.setattr(commits_module, "STOP_COMMIT_SECONDS", 0.1)
    in_hand, consumer = InHand(), Unreachable()
    commits = Commits(in_hand, group="g", interval_seconds=60)
    finish(in_hand, 0, 0)
    await asyncio.wait_for(commits.stop(consumer), 2)  # bounded: the stop that closes the consumer comes next


async def test_a_delayed_commit_cancelled_by_a_stop_before_it_ran_does_not_block_later_ones() -> None:
    in_hand, consumer = InHand(), Consumer()
    commits = Commits(in_hand, group="g", interval_seconds=0.1)
    finish(in_hand, 0, 0)
    await commits.after_batch(consumer)
    finish(in_hand, 0, 1)
    await commits.after_batch(consumer)  # schedules the delayed commit, which has not run yet
    await commits.stop(consumer)
    commits.start()  # the subscriber starts again
    finish(in_hand, 0, 2)
    await commits.after_batch(consumer)
    finish(in_hand, 0, 3)
    await commits.after_batch(consumer)
    await asyncio.sleep(0.25)
    assert consumer.commits[-1] == {tp(0): 4}
