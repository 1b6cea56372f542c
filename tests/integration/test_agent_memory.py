"""The agent's conversation memory in real Redis: bounded in turns, with what leaves folded into the summary."""

import uuid

import pytest
from redis.asyncio import Redis

from services.agent import memory
from services.agent.burst import Answered, BurstBuffer
from services.handoff.mode import HUMAN, set_mode
from tests.builders import inbound_text

pytestmark = pytest.mark.integration


def turn(i: int) -> dict[str, str]:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"line {i}"}


async def test_turns_past_the_bound_fold_into_the_summary_in_order(redis: Redis) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex}"
    for i in range(memory.MAX_STORED_TURNS):
        await memory.remember(redis, tenant, conversation, turn(i))
    summary, recent = await memory.context(redis, tenant, conversation)
    assert summary == ""  # everything still stored, and it fits the budget
    assert [t["content"] for t in recent] == [f"line {i}" for i in range(memory.MAX_STORED_TURNS)]

    # Three more in one call: the three oldest leave the store and enter the summary, oldest first.
    await memory.remember(redis, tenant, conversation, *(turn(i) for i in range(40, 43)))
    summary, recent = await memory.context(redis, tenant, conversation)
    assert summary == "customer: line 0 | you: line 1 | customer: line 2"
    assert [t["content"] for t in recent] == [f"line {i}" for i in range(3, 43)]

    await memory.remember(redis, tenant, conversation, turn(43))
    summary, recent = await memory.context(redis, tenant, conversation)
    assert summary == "customer: line 0 | you: line 1 | customer: line 2 | you: line 3"
    assert len(recent) == memory.MAX_STORED_TURNS


async def test_an_empty_conversation_has_no_summary_and_no_turns(redis: Redis) -> None:
    assert await memory.context(redis, uuid.uuid4(), "never-seen") == ("", [])


async def test_conversations_and_tenants_do_not_share_memory(redis: Redis) -> None:
    tenant, other = uuid.uuid4(), uuid.uuid4()
    await memory.remember(redis, tenant, "c1", {"role": "user", "content": "mine"})
    assert await memory.context(redis, other, "c1") == ("", [])
    assert await memory.context(redis, tenant, "c2") == ("", [])


async def test_a_turns_state_is_the_mode_the_order_and_the_memory_of_its_own_conversation(redis: Redis) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex}"
    empty = await memory.turn_state(redis, tenant, conversation)
    assert (empty.mode, empty.order_id, empty.summary, empty.recent) == ("ai", None, "", [])
    order_id = uuid.uuid4()
    await memory.set_current_order(redis, tenant, conversation, order_id)
    for i in range(memory.MAX_STORED_TURNS + 2):
        await memory.remember(redis, tenant, conversation, turn(i))
    await set_mode(redis, tenant, conversation, HUMAN)  # handoff's mirror: a person took the conversation
    state = await memory.turn_state(redis, tenant, conversation)
    assert (state.mode, state.order_id) == ("human", order_id)
    assert (state.summary, state.recent) == await memory.context(redis, tenant, conversation)
    assert state.summary == "customer: line 0 | you: line 1"
    # Another tenant's conversation of the same id shares none of it.
    other = await memory.turn_state(redis, uuid.uuid4(), conversation)
    assert (other.mode, other.order_id, other.recent) == ("ai", None, [])


async def test_a_claimed_burst_carries_the_turns_state_read_in_the_claims_own_step(redis: Redis) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex}"
    buffer = BurstBuffer(redis, quiet_seconds=0)
    order_id = uuid.uuid4()
    await memory.set_current_order(redis, tenant, conversation, order_id)
    for i in range(memory.MAX_STORED_TURNS + 2):
        await memory.remember(redis, tenant, conversation, turn(i))
    await set_mode(redis, tenant, conversation, HUMAN)
    message = inbound_text(tenant, conversation, "is the mug in stock?")
    assert await buffer.add(message)
    burst = await buffer.claim(f"{tenant}:{conversation}")
    assert burst is not None and [m.event_id for m in burst.messages] == [message.event_id]
    # The same state a separate read finds: what the responder used to read after the claim.
    assert burst.state == await memory.turn_state(redis, tenant, conversation)
    assert burst.state is not None and (burst.state.mode, burst.state.order_id) == ("human", order_id)
    # A conversation nobody wrote to before claims with an empty state.
    fresh = inbound_text(tenant, f"conv-{uuid.uuid4().hex}", "hello")
    await buffer.add(fresh)
    claimed = await buffer.claim(f"{tenant}:{fresh.conversation_id}")
    assert claimed is not None and claimed.state is not None
    assert (claimed.state.mode, claimed.state.order_id, claimed.state.recent) == ("ai", None, [])


async def test_finishing_a_burst_remembers_its_exchange_in_the_same_step_and_folds_the_overflow(redis: Redis) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex}"
    buffer = BurstBuffer(redis, quiet_seconds=0)
    for i in range(memory.MAX_STORED_TURNS - 1):
        await memory.remember(redis, tenant, conversation, turn(i))
    await buffer.add(inbound_text(tenant, conversation, "two mugs please"))
    member = f"{tenant}:{conversation}"
    burst = await buffer.claim(member)
    assert burst is not None
    exchange = [{"role": "user", "content": "two mugs please"}, {"role": "assistant", "content": "Done!"}]
    await buffer.finish(burst, Answered(exchange))
    # Released and emptied: nothing left to answer, the conversation no longer due.
    assert member not in await buffer.due()
    assert await buffer.claim(member) is None
    # 39 stored + 2 = 41: the oldest turn was folded into the summary, the exchange is the newest memory.
    summary, recent = await memory.context(redis, tenant, conversation)
    assert summary == "customer: line 0"
    assert recent[-2:] == exchange
    # A burst finished with nothing to remember leaves the memory as it was.
    await buffer.add(inbound_text(tenant, conversation, "👍"))
    again = await buffer.claim(member)
    assert again is not None
    await buffer.finish(again)
    assert await memory.context(redis, tenant, conversation) == (summary, recent)


async def test_a_due_member_that_names_no_tenant_is_dropped_not_retried_forever(redis: Redis) -> None:
    buffer = BurstBuffer(redis, quiet_seconds=0)
    await redis.zadd("agent:burst:due", {"not-a-tenant:conv": 0})
    assert await buffer.claim("not-a-tenant:conv") is None
    assert "not-a-tenant:conv" not in await buffer.due(limit=1000)


async def test_finishing_a_burst_that_fits_appends_its_exchange_in_the_finish_step(redis: Redis) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex}"
    buffer = BurstBuffer(redis, quiet_seconds=0)
    await memory.remember(redis, tenant, conversation, turn(0))
    await buffer.add(inbound_text(tenant, conversation, "hi"))
    burst = await buffer.claim(f"{tenant}:{conversation}")
    assert burst is not None and burst.state is not None and burst.state.stored == 1
    exchange = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]
    await buffer.finish(burst, Answered(exchange))
    assert await memory.context(redis, tenant, conversation) == ("", [turn(0), *exchange])
