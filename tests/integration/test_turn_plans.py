"""A turn's plan in real Redis: kept only by the holder of the claim, read back by a retry only while the buffer
still begins with what it answered, and gone once its turn finished."""

import json
import uuid

import pytest
from redis.asyncio import Redis

from schemas.channel import InboundMessage
from schemas.registry import adapter_for
from schemas.topics import CHANNEL_OUTBOUND
from services.agent import memory
from services.agent.burst import DUE_KEY, UNREADABLE_PATIENCE, Answered, Burst, BurstBuffer, ClaimLost
from services.agent.turn_plan import TurnPlan, encode, legacy_prefix, plan_key
from tests.builders import inbound_text, random_tenant_id

pytestmark = pytest.mark.integration


def conversation() -> tuple[uuid.UUID, str, str]:
    tenant, conversation_id = random_tenant_id(), f"conv-{uuid.uuid4().hex}"
    return tenant, conversation_id, f"{tenant}:{conversation_id}"


def plan_for(burst: Burst, reply: str = "hello!") -> TurnPlan:
    """What a turn that answers `burst` with `reply` keeps: the reply, and the exchange to remember."""
    last = burst.last
    outbound = {
        **json.loads(last.model_dump_json(include={"tenant_id", "correlation_id", "conversation_id", "channel"})),
        "event_id": str(uuid.uuid4()),
        "causation_id": str(last.event_id),
        "occurred_at": last.occurred_at.isoformat(),
        "producer": "agent",
        "channel_account_id": last.channel_account_id,
        "customer_id": last.customer_id,
        "author": "ai",
        "text": reply,
    }
    message = adapter_for(CHANNEL_OUTBOUND).validate_json(json.dumps(outbound))
    exchange = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": reply}]
    head, tail = str(burst.messages[0].event_id), str(last.event_id)
    return TurnPlan([(CHANNEL_OUTBOUND, message, last.conversation_id)], exchange, burst.taken, head, tail)


async def lapse(redis: Redis, member: str) -> None:
    """The claim's lock expired and the conversation is due again, as a worker that stalled leaves it."""
    await redis.delete(f"agent:burst-lock:{member}")
    await redis.zadd(DUE_KEY, {member: 0})


async def add(buffer: BurstBuffer, tenant: uuid.UUID, conversation_id: str, text: str) -> InboundMessage:
    message = inbound_text(tenant, conversation_id, text)
    assert await buffer.add(message)
    return message


async def claim(buffer: BurstBuffer, member: str) -> Burst:
    burst = await buffer.claim(member)
    assert burst is not None
    return burst


async def test_a_run_whose_claim_lapsed_keeps_no_plan_and_the_next_turn_answers_its_own_messages(
    redis: Redis,
) -> None:
    """A stalls past its lock; B answers the burst and finishes; the customer writes again. A's plan, kept now,
    would be read by the next claim as its own, answer the first burst again and trim the new message unanswered."""
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    await add(buffer, tenant, conversation_id, "one")
    a = await claim(buffer, member)
    await lapse(redis, member)
    b = await claim(buffer, member)
    await buffer.finish(b, Answered(remember=[], taken=None))
    later = await add(buffer, tenant, conversation_id, "two")
    with pytest.raises(ClaimLost):
        await buffer.keep_plan(a, plan_for(a))
    assert not await redis.exists(plan_key(tenant, conversation_id))
    c = await claim(buffer, member)
    assert c.plan is None and [m.event_id for m in c.messages] == [later.event_id]


async def test_a_plan_whose_messages_are_gone_is_dropped_at_the_claim(redis: Redis) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    await add(buffer, tenant, conversation_id, "one")
    first = await claim(buffer, member)
    stale = plan_for(first)
    await buffer.finish(first)
    await redis.set(plan_key(tenant, conversation_id), encode(stale))  # left behind, however it got there
    newer = await add(buffer, tenant, conversation_id, "two")
    burst = await claim(buffer, member)
    assert burst.plan is None and [m.event_id for m in burst.messages] == [newer.event_id]
    assert not await redis.exists(plan_key(tenant, conversation_id))


async def test_a_plan_that_cannot_be_read_is_dropped_at_the_claim(redis: Redis) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    message = await add(buffer, tenant, conversation_id, "one")
    await redis.set(plan_key(tenant, conversation_id), '{"messages": [{"topic": "nope"}]}')
    burst = await claim(buffer, member)
    assert burst.plan is None and [m.event_id for m in burst.messages] == [message.event_id]
    assert not await redis.exists(plan_key(tenant, conversation_id))


async def test_a_retry_takes_the_plan_and_the_messages_behind_it_wait_for_their_own_turn(redis: Redis) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    first = await add(buffer, tenant, conversation_id, "one")
    run = await claim(buffer, member)
    kept = await buffer.keep_plan(run, plan_for(run))
    await lapse(redis, member)  # the run failed after keeping its plan
    newer = await add(buffer, tenant, conversation_id, "two")
    retry = await claim(buffer, member)
    assert retry.plan == kept and [m.event_id for m in retry.messages] == [first.event_id]
    await buffer.finish(retry, Answered(kept.remember))
    assert await redis.lrange(f"agent:burst:{member}", 0, -1) != []
    assert not await redis.exists(plan_key(tenant, conversation_id))
    following = await claim(buffer, member)
    assert [m.event_id for m in following.messages] == [newer.event_id]
    assert following.state is not None and following.state.recent == kept.remember


async def test_a_finish_never_trims_past_what_its_claim_saw(redis: Redis) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    await add(buffer, tenant, conversation_id, "one")
    burst = await claim(buffer, member)
    newer = await add(buffer, tenant, conversation_id, "two")
    await buffer.finish(burst, Answered(taken=5))
    [left] = await redis.lrange(f"agent:burst:{member}", 0, -1)
    assert InboundMessage.model_validate_json(left).event_id == newer.event_id


async def test_a_run_whose_claim_lapsed_adds_nothing_to_memory_even_when_it_would_fold(redis: Redis) -> None:
    """Its exchange is the holder's to remember: appended by both, it was in memory twice."""
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    old = [{"role": "user", "content": f"old {n}"} for n in range(memory.MAX_STORED_TURNS)]
    await redis.rpush(memory.turns_key(tenant, conversation_id), *memory.stored(old))
    await add(buffer, tenant, conversation_id, "one")
    a = await claim(buffer, member)
    await lapse(redis, member)
    b = await claim(buffer, member)
    exchange = [{"role": "user", "content": "one"}, {"role": "assistant", "content": "hello!"}]
    await buffer.finish(a, Answered(exchange))
    await buffer.finish(b, Answered(exchange))
    summary, recent = await memory.context(redis, tenant, conversation_id)
    everything = [turn["content"] for turn in recent] + [summary]
    assert sum(text.count("hello!") for text in everything) == 1
    assert await redis.llen(memory.turns_key(tenant, conversation_id)) <= memory.MAX_STORED_TURNS


async def test_a_plan_kept_under_the_last_message_is_republished_after_an_upgrade_and_then_deleted(
    redis: Redis,
) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    await add(buffer, tenant, conversation_id, "one")
    last = await add(buffer, tenant, conversation_id, "two")
    run = await claim(buffer, member)
    plan = plan_for(run)
    legacy = f"{legacy_prefix(tenant)}{last.event_id}"
    old_format = json.loads(encode(plan))
    await redis.set(legacy, json.dumps({"messages": old_format["messages"], "remember": old_format["remember"]}))
    await lapse(redis, member)
    retry = await claim(buffer, member)
    assert retry.plan is not None and retry.plan.messages == plan.messages and retry.plan.taken == 2
    await buffer.finish(retry, Answered(retry.plan.remember))
    assert not await redis.exists(legacy)


async def test_a_buffered_entry_no_worker_can_read_is_dropped_and_the_rest_answered(redis: Redis) -> None:
    """Written by a schema this worker does not know: every claim raised on it, for ever, and the conversation's
    later messages waited behind it."""
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    await redis.rpush(f"agent:burst:{member}", '{"type": "inbound_message", "from_a_newer_schema": true}')
    readable = await add(buffer, tenant, conversation_id, "still there?")
    for _ in range(UNREADABLE_PATIENCE - 1):  # left for a worker that can read it, a lock's life at a time
        assert await buffer.claim(member) is None
        assert await redis.llen(f"agent:burst:{member}") == 2
        await lapse(redis, member)
    burst = await claim(buffer, member)
    assert [m.event_id for m in burst.messages] == [readable.event_id]
    assert burst.taken == 2  # the unreadable entry goes with the burst
    await buffer.finish(burst, Answered())
    assert await redis.llen(f"agent:burst:{member}") == 0


async def test_a_buffer_of_only_unreadable_entries_is_emptied_and_frees_the_conversation(redis: Redis) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    tenant, conversation_id, member = conversation()
    await redis.rpush(f"agent:burst:{member}", "not json at all")
    for _ in range(UNREADABLE_PATIENCE):
        await lapse(redis, member)
        assert await buffer.claim(member) is None
    assert await redis.llen(f"agent:burst:{member}") == 0
    assert not await redis.exists(f"agent:burst-lock:{member}")
    later = await add(buffer, tenant, conversation_id, "hello?")
    assert [m.event_id for m in (await claim(buffer, member)).messages] == [later.event_id]
