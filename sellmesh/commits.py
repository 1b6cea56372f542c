"""Offset commits of a batch consumer: what is finished, at most once per interval instead of once per batch.

Under load a fetched batch holds a record or two per partition, so a commit per batch was close to a commit per
record: a broker round trip each, about 6 % of the mesh's interpreter time. Committing late never commits
unfinished work, since the offsets come from what the subscriber finished (`InHand.done`), not from the
consumer's position; it only widens what a crash delivers again (at most one interval of finished records,
which every handler drops by its dedup marks or unique keys). A revoke commits the revoked partitions' finished
offsets at once (`rebalance.py`), and so does a stop: nothing finished waits out the interval then.
"""

import asyncio
import logging
import time
from typing import Any

from aiokafka import TopicPartition

from sellmesh.rebalance import InHand
from sellmesh.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# How long a stop waits for its commit: what it could not commit is delivered again and dropped by dedup.
STOP_COMMIT_SECONDS = 5.0


class Commits:
    def __init__(self, in_hand: InHand, *, group: str, interval_seconds: float) -> None:
        self.in_hand = in_hand
        self.group = group
        self.interval_seconds = interval_seconds
        self.committed: dict[TopicPartition, int] = {}  # per partition, the next offset the group has
        self.stopping = False
        self._last = 0.0
        self._later: asyncio.Task[None] | None = None

    def pending(self, consumer: Any) -> dict[TopicPartition, int]:
        """Finished offsets of partitions this consumer owns that the group does not have yet."""
        owned = consumer.assignment()
        offsets = {tp: offset + 1 for tp, offset in self.in_hand.done.items() if tp in owned}
        return {tp: offset for tp, offset in offsets.items() if self.committed.get(tp) != offset}

    async def after_batch(self, consumer: Any) -> None:
        """A batch is done: commit now if the last commit is an interval old (or the consumer is stopping),
        else once the interval has passed, unless another batch commits first."""
        wait = self._last + self.interval_seconds - time.monotonic()
        if self.stopping or wait <= 0:
            await self.commit(consumer)
        elif self._later is None:
            self._later = asyncio.create_task(self._commit_later(consumer, wait), name=f"commit-{self.group}")

    async def commit(self, consumer: Any) -> bool:
        """Commit every finished offset the group lacks; False (logged) when the commit failed, and the
        offsets stay pending for the next one."""
        offsets = self.pending(consumer)
        self._last = time.monotonic()
        if not offsets:
            return True
        try:
            await consumer.commit(offsets)
        except Exception:
            # Only means finished records are delivered again after a crash or rebalance; their dedup drops them.
            log.warning("could not commit finished offsets", extra={"group": self.group}, exc_info=True)
            return False
        self.committed.update(offsets)
        return True

    async def _commit_later(self, consumer: Any, wait: float) -> None:
        try:
            while True:
                await asyncio.sleep(wait)
                # A batch that ended while this commit was with the broker found this task still here and left
                # its offsets to it: without another look they would wait for the next batch, however late.
                if await self.commit(consumer) and not self.pending(consumer):
                    return
                wait = self.interval_seconds
        finally:
            self._later = None

    def forget(self, partitions: set[TopicPartition]) -> None:
        """Partitions revoked (their finished offsets committed by the revoke): their next owner commits them."""
        for tp in partitions:
            self.committed.pop(tp, None)

    async def stop(self, consumer: Any) -> None:
        """From now on every batch commits as it finishes; what finished before is committed now."""
        self.stopping = True
        await cancel_and_wait(self._later)
        self._later = None  # a task cancelled before it ran never reached its own `finally`
        if consumer is None:
            return
        try:
            # Bounded: with the group coordinator unreachable aiokafka retries a commit until the consumer closes,
            # and the stop that closes it comes after this.
            await asyncio.wait_for(self.commit(consumer), STOP_COMMIT_SECONDS)
        except TimeoutError:
            log.warning("could not commit finished offsets before stopping", extra={"group": self.group})

    def start(self) -> None:
        self.stopping = False
