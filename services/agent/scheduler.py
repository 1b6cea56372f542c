"""Answers each conversation's burst once it has been quiet; a turn that keeps failing hands over."""

import asyncio
import contextlib
import logging

from sellmesh.redis import count_within
from sellmesh.subscriber import dependency_unavailable
from sellmesh.tasks import cancel_and_wait, wait_set
from services.agent.burst import Answered, Burst, BurstBuffer, ClaimLost
from services.agent.metrics import TURNS_GIVEN_UP
from services.agent.responder import Responder

log = logging.getLogger(__name__)

FAILURES_PREFIX = "agent:turn-failures:"
FAILURES_WINDOW_SECONDS = 3600


class BurstScheduler:
    def __init__(
        self,
        *,
        buffer: BurstBuffer,
        responder: Responder,
        poll_seconds: float = 0.05,
        concurrency: int = 8,
        max_failures: int = 5,
    ) -> None:
        self.buffer = buffer
        self.max_failures = max_failures
        self.responder = responder
        self.poll_seconds = poll_seconds
        # Different conversations are answered in parallel; one conversation never twice at once (its lock).
        self.slots = asyncio.Semaphore(concurrency)
        self._task: asyncio.Task[None] | None = None
        self._turns: set[asyncio.Task[None]] = set()
        # Set when a burst this process buffered falls due; the poll still finds other replicas' bursts and
        # turns whose lock expired. Waiting for the poll alone added half a poll to every reply on average.
        self._wake = asyncio.Event()
        buffer.on_due(self._wake_in)

    def _wake_in(self, seconds: float) -> None:
        if seconds <= 0:
            self._wake.set()
        else:
            asyncio.get_running_loop().call_later(seconds, self._wake.set)

    async def _idle(self) -> None:
        await wait_set(self._wake, self.poll_seconds)
        self._wake.clear()

    async def run(self) -> None:
        while True:
            try:
                for member in await self.buffer.due():
                    await self.slots.acquire()
                    task = asyncio.create_task(self._turn(member))
                    self._turns.add(task)
                    task.add_done_callback(self._turns.discard)
            except Exception:
                log.exception("burst scheduler could not read the buffer; retrying")
                await asyncio.sleep(1.0)
            await self._idle()

    async def _turn(self, member: str) -> None:
        burst: Burst | None = None
        try:
            burst = await self.buffer.claim(member)
            if burst is None:
                return
            keeper = asyncio.create_task(self._keep_claimed(burst))
            try:
                answered = await self.responder.answer(burst)
            finally:
                await cancel_and_wait(keeper)
            await self.buffer.finish(burst, answered)
        except ClaimLost:
            log.warning("a turn's claim lapsed before it published; the worker holding it answers the burst")
        except Exception as failure:
            # Left locked: the conversation becomes due again when the lock expires, and is retried.
            log.exception("turn failed; it will be retried")
            # An outage (the database, the broker, Redis) fails every conversation alike and is waited out: only a
            # failure of this burst's own counts towards giving up on it.
            if burst is not None and not dependency_unavailable(failure):
                await self._count_failure(burst)
        finally:
            self.slots.release()

    async def _count_failure(self, burst: Burst) -> None:
        """A turn failing every time (a bug its messages trigger, the catalog unreadable) would be retried for ever,
        with every later message of the conversation waiting behind it: after `max_failures` within the hour the
        customer gets a person instead, and the burst is dropped."""
        # Per burst (its first message): a later burst of the conversation starts from nothing.
        key = f"{FAILURES_PREFIX}{burst.member}:{burst.messages[0].event_id}"
        try:
            failures = await count_within(self.buffer.redis, key, FAILURES_WINDOW_SECONDS)
            if failures < self.max_failures:
                return
            await self.responder.give_up(burst)
            await self.buffer.finish(burst, Answered())
            await self.buffer.redis.delete(key)
            TURNS_GIVEN_UP.inc()
            log.error("turn failed too often; a person was asked for", extra={"failures": failures})
        except Exception:
            log.exception("could not count a failed turn; it will be retried")

    async def _keep_claimed(self, burst: Burst) -> None:
        while True:
            await asyncio.sleep(self.buffer.lock_seconds / 3)
            try:
                await self.buffer.renew(burst)
            except Exception:
                log.warning("could not renew a conversation's claim", exc_info=True)

    async def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="agent-burst-scheduler")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for task in list(self._turns):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
