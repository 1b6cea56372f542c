"""The agent's conversation memory in real Redis: bounded in turns, with what leaves folded into the summary."""

import uuid

import pytest
from redis.asyncio import Redis

from services.agent import memory
from services.handoff.mode import HUMAN, set_mode

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
