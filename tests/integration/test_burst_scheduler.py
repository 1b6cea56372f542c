"""The burst scheduler in real Redis: a burst this process buffered is answered when it falls due, not a poll later."""

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import cast

import pytest
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy import Engine

from sellmesh.settings import OFFLINE_MODEL
from sellmesh.subscriber import DependencyUnavailable, Handled, RedisDedup
from services.agent.burst import DUE_KEY, Answered, Burst, BurstBuffer
from services.agent.model_call import ModelChoice
from services.agent.responder import Responder
from services.agent.scheduler import BurstScheduler
from tests.builders import inbound_text, random_tenant_id

pytestmark = pytest.mark.integration

# Far longer than any test waits: a burst answered within the test was woken for, not polled.
POLL_SECONDS = 60.0


class RecordingResponder:
    def __init__(self) -> None:
        self.answered: dict[str, float] = {}
        self.bursts: dict[str, Burst] = {}
        self.changed = asyncio.Event()

    async def answer(self, burst: Burst) -> Answered:
        self.answered[burst.last.conversation_id] = time.monotonic()
        self.bursts[burst.last.conversation_id] = burst
        self.changed.set()
        return Answered()


async def answered(responder: RecordingResponder, conversation_id: str, *, within: float = 5.0) -> float:
    deadline = time.monotonic() + within
    while conversation_id not in responder.answered:
        responder.changed.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{conversation_id} was not answered within {within} s")
        try:
            await asyncio.wait_for(responder.changed.wait(), remaining)
        except TimeoutError:
            continue
    return responder.answered[conversation_id]


@contextlib.asynccontextmanager
async def running(buffer: BurstBuffer) -> AsyncIterator[tuple[BurstScheduler, RecordingResponder]]:
    """A scheduler whose first poll is done: from here on only a wake-up starts a turn. The whole test runs under
    one deadline, so a wait that never ends fails with the line it hung on instead of the run's timeout."""
    responder = RecordingResponder()
    scheduler = BurstScheduler(buffer=buffer, responder=cast(Responder, responder), poll_seconds=POLL_SECONDS)
    async with asyncio.timeout(30):
        # Bursts earlier tests left due in this Redis database would be this scheduler's first poll's work, and
        # that poll could outlast the wait below.
        await buffer.redis.delete(DUE_KEY)
        await scheduler.start()
        await asyncio.sleep(0.05)
        try:
            yield scheduler, responder
        finally:
            await scheduler.stop()


async def test_a_burst_with_no_quiet_period_is_answered_at_once(redis: Redis) -> None:
    async with running(BurstBuffer(redis, quiet_seconds=0)) as (scheduler, responder):
        conversation = f"conv-{uuid.uuid4().hex}"
        await scheduler.buffer.add(inbound_text(random_tenant_id(), conversation, "hi"))
        await answered(responder, conversation)
        assert [m.content.text for m in responder.bursts[conversation].messages] == ["hi"]


async def test_a_burst_is_answered_once_quiet_and_not_before(redis: Redis) -> None:
    quiet = 0.3
    async with running(BurstBuffer(redis, quiet_seconds=quiet)) as (scheduler, responder):
        tenant, conversation = random_tenant_id(), f"conv-{uuid.uuid4().hex}"
        await scheduler.buffer.add(inbound_text(tenant, conversation, "do you have"))
        # Read before the second add: its due time is taken inside the call, so this is a bound from below
        # however long a loaded machine takes to return from it.
        last_added = time.monotonic()
        await scheduler.buffer.add(inbound_text(tenant, conversation, "the blue mug?"))
        answered_at = await answered(responder, conversation)
        # Both fragments in one turn, after the quiet period that the second fragment restarted.
        assert answered_at - last_added >= quiet - 0.01
        texts = [m.content.text for m in responder.bursts[conversation].messages]
        assert texts == ["do you have", "the blue mug?"]


async def test_a_message_buffered_again_is_answered_once_before_or_after_its_turn(redis: Redis) -> None:
    async with running(BurstBuffer(redis, quiet_seconds=0.2)) as (scheduler, responder):
        tenant, conversation = random_tenant_id(), f"conv-{uuid.uuid4().hex}"
        first = inbound_text(tenant, conversation, "hi")
        assert await scheduler.buffer.add(first)
        assert not await scheduler.buffer.add(first)  # redelivered while it waits for its turn
        await answered(responder, conversation)
        assert [m.event_id for m in responder.bursts[conversation].messages] == [first.event_id]
        await asyncio.sleep(0.05)  # the turn finished: the buffer is empty, the conversation no longer due
        responder.answered.clear()
        # Redelivered after its answer (a crash before the offset commit): nothing is buffered, nothing is due.
        assert not await scheduler.buffer.add(first)
        assert await redis.llen(f"agent:burst:{tenant}:{conversation}") == 0
        assert await redis.zscore(DUE_KEY, f"{tenant}:{conversation}") is None
        later = inbound_text(tenant, conversation, "still there?")
        assert await scheduler.buffer.add(later)
        await answered(responder, conversation)
        assert [m.event_id for m in responder.bursts[conversation].messages] == [later.event_id]


async def test_the_agents_inbound_handler_reports_a_redelivery_to_the_subscriber(
    redis: Redis, migrated_engine: Engine
) -> None:
    # Its subscription has no Redis dedup in front: only the buffer's own mark tells a redelivery apart.
    responder = Responder(
        engine=migrated_engine,
        redis=redis,
        broker=cast(KafkaBroker, None),  # buffering publishes nothing
        buffer=BurstBuffer(redis, quiet_seconds=60),
        choice=ModelChoice(model=OFFLINE_MODEL, fallbacks=[], timeout=10),
    )
    message = inbound_text(random_tenant_id(), f"conv-{uuid.uuid4().hex}", "hi")
    assert await responder.on_inbound(message) is None
    assert await responder.on_inbound(message) is Handled.DUPLICATE


async def test_a_message_the_consumers_dedup_marked_before_the_upgrade_is_not_buffered_again(redis: Redis) -> None:
    """Before the buffer marked event ids itself, the consumer's dedup did, under the subscription's key."""
    buffer = BurstBuffer(redis, quiet_seconds=60)
    answered_before = inbound_text(random_tenant_id(), f"conv-{uuid.uuid4().hex}", "hi")
    await RedisDedup(redis, ttl_seconds=60).mark(f"agent:inbound_message:{answered_before.event_id}")
    assert not await buffer.add(answered_before)
    assert await redis.llen(f"agent:burst:{answered_before.tenant_id}:{answered_before.conversation_id}") == 0


async def test_a_turn_that_lost_its_claim_leaves_the_buffer_to_the_worker_that_holds_it(redis: Redis) -> None:
    """A's claim lapsed (its renewals failed) and B claimed the burst; the customer wrote again. A finishing
    must not trim what B took, or B's own trim would then drop the new message unanswered."""
    buffer = BurstBuffer(redis, quiet_seconds=0, lock_seconds=1)
    tenant = random_tenant_id()
    conversation = f"conv-{uuid.uuid4().hex}"
    member = f"{tenant}:{conversation}"
    assert await buffer.add(inbound_text(tenant, conversation, "one"))
    a = await buffer.claim(member)
    assert a is not None
    await asyncio.sleep(1.1)  # A's lock expires
    await redis.zadd(DUE_KEY, {member: time.time()})  # due again, as the claim left it after the lock
    b = await buffer.claim(member)
    assert b is not None and [m.event_id for m in b.messages] == [m.event_id for m in a.messages]
    assert await buffer.add(inbound_text(tenant, conversation, "two"))
    await buffer.finish(a)  # lost its claim: changes nothing
    await buffer.finish(b)
    assert await redis.lrange(f"agent:burst:{member}", 0, -1) != []  # "two" waits for its turn
    assert await redis.zscore(DUE_KEY, member) is not None


async def test_a_due_conversation_with_nothing_buffered_is_no_longer_due(redis: Redis) -> None:
    """Its buffer expired: claimed, it held a lock and came due again after every lock life, for ever."""
    buffer = BurstBuffer(redis, quiet_seconds=0)
    member = f"{random_tenant_id()}:conv-{uuid.uuid4().hex}"
    await redis.zadd(DUE_KEY, {member: time.time() - 1})
    assert await buffer.claim(member) is None
    assert await redis.zscore(DUE_KEY, member) is None
    assert not await redis.exists(f"agent:burst-lock:{member}")


async def test_an_empty_burst_whose_turn_holds_the_claim_stays_due(redis: Redis) -> None:
    """A turn mid-finish holds the lock: its own finish settles the conversation, not a claim from outside."""
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation = random_tenant_id(), f"conv-{uuid.uuid4().hex}"
    member = f"{tenant}:{conversation}"
    assert await buffer.add(inbound_text(tenant, conversation, "hi"))
    held = await buffer.claim(member)
    assert held is not None
    await redis.delete(f"agent:burst:{member}")
    await redis.zadd(DUE_KEY, {member: time.time() - 1})
    assert await buffer.claim(member) is None
    assert await redis.zscore(DUE_KEY, member) is not None


class FailingResponder:
    """Every turn fails (a bug its messages trigger); records the give-up the scheduler asks for."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.gave_up: list[Burst] = []
        self.error = error or RuntimeError("catalog unreadable")

    async def answer(self, burst: Burst) -> Answered:
        self.calls += 1
        raise self.error

    async def give_up(self, burst: Burst) -> None:
        self.gave_up.append(burst)


async def test_a_turn_that_keeps_failing_hands_the_customer_to_a_person_and_frees_the_conversation(
    redis: Redis,
) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    responder = FailingResponder()
    scheduler = BurstScheduler(buffer=buffer, responder=cast(Responder, responder), max_failures=3)
    tenant, conversation = random_tenant_id(), f"conv-{uuid.uuid4().hex}"
    member = f"{tenant}:{conversation}"
    await buffer.add(inbound_text(tenant, conversation, "hi"))
    async with asyncio.timeout(30):
        for attempt in range(3):
            await scheduler.slots.acquire()
            await scheduler._turn(member)
            assert len(responder.gave_up) == (1 if attempt == 2 else 0)
            await redis.delete(f"agent:burst-lock:{member}")  # the lock expired: due again
            await redis.zadd(DUE_KEY, {member: 0})
        assert responder.calls == 3
        [burst] = responder.gave_up
        assert [m.content.text for m in burst.messages] == ["hi"]
        assert await buffer.claim(member) is None  # the burst is gone: later messages are not stuck behind it
        await buffer.add(inbound_text(tenant, conversation, "still there?"))
        await scheduler.slots.acquire()
        await scheduler._turn(member)
        assert responder.calls == 4 and len(responder.gave_up) == 1  # the count started over


async def test_an_outage_failing_every_turn_is_waited_out_not_handed_to_people(redis: Redis) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    responder = FailingResponder(DependencyUnavailable("database unreachable"))
    scheduler = BurstScheduler(buffer=buffer, responder=cast(Responder, responder), max_failures=2)
    tenant, conversation = random_tenant_id(), f"conv-{uuid.uuid4().hex}"
    member = f"{tenant}:{conversation}"
    await buffer.add(inbound_text(tenant, conversation, "hi"))
    async with asyncio.timeout(30):
        for _ in range(4):
            await scheduler.slots.acquire()
            await scheduler._turn(member)
            await redis.delete(f"agent:burst-lock:{member}")
            await redis.zadd(DUE_KEY, {member: 0})
    assert responder.calls == 4 and responder.gave_up == []
