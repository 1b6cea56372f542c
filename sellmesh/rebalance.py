"""On a rebalance, the message in hand finishes and what is done is committed before the partitions move.

Without this, a revoked partition goes to its next owner at the last committed offset while the old owner
is still in the middle of a message: both run it at once, and dedup by event id (marked only when a run
finishes) cannot stop the second run, so a reply could be sent twice.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

from sellmesh.tasks import wait_set

log = logging.getLogger(__name__)


class InHand:
    """What one subscription is doing: how many messages are in hand, and the last offset finished per partition.

    A subscription with several consumers (KAFKA_CONSUMERS_PER_SUBSCRIPTION) holds one message per consumer.
    """

    def __init__(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()
        self._count = 0
        self.done: dict[TopicPartition, int] = {}
        # Partitions being revoked, or gone: a batch starts none of their records any more (`may_start`).
        self.revoking: set[TopicPartition] = set()

    def may_start(self, record: ConsumerRecord[bytes, bytes]) -> bool:
        """False once the record's partition is being revoked: it is the next owner's, from the offset the
        revoke commits, and running it here too would run it twice at once."""
        return TopicPartition(record.topic, record.partition) not in self.revoking

    @contextlib.contextmanager
    def holding(self, record: ConsumerRecord[bytes, bytes]) -> Iterator[None]:
        """Marks `record` in hand; it counts as done only if the block finishes without an exception."""
        self._count += 1
        self._idle.clear()
        try:
            yield
            self.done[TopicPartition(record.topic, record.partition)] = record.offset
        finally:
            self._count -= 1
            if self._count == 0:
                self._idle.set()

    async def finished(self, within: float) -> bool:
        """True once nothing is in hand; False if something still is after `within` seconds.

        Looks at the count again after each wake-up: a batch starts its next record in the same step as the one
        before finishes, so by the time a waiter runs, the idle moment that woke it may be over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._count:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await wait_set(self._idle, remaining):
                return self._count == 0
        return True


class FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    """Waits (up to `wait_seconds`) for the message in hand, then commits the revoked partitions' finished offsets.

    Offsets are the ones this subscriber finished, not the consumer's position: a message that failed and is
    about to be rewound for redelivery must not be committed past.
    """

    def __init__(self, in_hand: InHand, *, group: str, wait_seconds: float) -> None:
        self.in_hand = in_hand
        self.group = group
        self.wait_seconds = wait_seconds
        self.subscriber: Any = None  # the FastStream subscriber, whose aiokafka consumer commits
        # Told which partitions left after their offsets were committed (the batch consumer's `Commits`).
        self.on_revoked: list[Callable[[set[TopicPartition]], None]] = []

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        self.in_hand.revoking |= revoked
        if not await self.in_hand.finished(self.wait_seconds):
            log.warning("partitions revoked mid-message; the next owner may run it again", extra={"group": self.group})
        offsets = {tp: offset + 1 for tp, offset in self.in_hand.done.items() if tp in revoked}
        for consumer in consumers_of(self.subscriber):
            # Each consumer commits only partitions it owns; the group refuses a commit for anyone else's.
            owned = {tp: offset for tp, offset in offsets.items() if tp in consumer.assignment()}
            if not owned:
                continue
            try:
                await consumer.commit(owned)
            except Exception:
                # Only means a finished message is delivered again; its dedup mark makes that a no-op.
                log.warning("could not commit before a rebalance", extra={"group": self.group}, exc_info=True)
        for tp in revoked:
            self.in_hand.done.pop(tp, None)
        for listener in self.on_revoked:
            listener(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Ours again (the consumer starts them from the committed offset): their records may run.
        self.in_hand.revoking -= assigned


def consumers_of(subscriber: Any) -> list[Any]:
    """The aiokafka consumers behind a FastStream subscriber: one, or a subgroup when it has several workers."""
    subgroup = getattr(subscriber, "consumer_subgroup", None)
    if subgroup:
        return list(subgroup)
    consumer = getattr(subscriber, "consumer", None)
    return [consumer] if consumer is not None else []
