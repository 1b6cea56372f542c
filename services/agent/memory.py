"""Conversation memory in Redis: the recent turns of each conversation, bounded in count and age."""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import WatchError

from schemas.channel import InboundMessage
from sellmesh.redis import members_among
from services.agent.context_window import fit_turns, summarize
from services.handoff.query import conversation_mode_key, handed_back, mode_of

MAX_STORED_TURNS = 40
BUDGET_TOKENS = 1500
TTL_SECONDS = 30 * 24 * 3600


def turns_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    """Where a conversation's recent turns are stored (the burst buffer's `finish` appends a turn's there)."""
    return f"agent:memory:{tenant_id}:{conversation_id}"


def _summary_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    return f"agent:summary:{tenant_id}:{conversation_id}"


async def context(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> tuple[str, list[dict[str, Any]]]:
    """(summary of what no longer fits, the recent turns that fit the token budget)."""
    # One round trip for both reads, and one snapshot: MULTI keeps a concurrent fold from splitting them.
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lrange(turns_key(tenant_id, conversation_id), 0, -1)
        pipe.get(_summary_key(tenant_id, conversation_id))
        raw_turns, previous = await pipe.execute()
    return _fitted(raw_turns, previous)


def _fitted(raw_turns: list[Any], previous: Any) -> tuple[str, list[dict[str, Any]]]:
    stored = [json.loads(raw) for raw in raw_turns]
    older, recent = fit_turns(stored, budget_tokens=BUDGET_TOKENS)
    return summarize(older, str(previous or "")), recent


@dataclass(frozen=True)
class TurnState:
    """What a turn reads from Redis before it answers, in one round trip."""

    mode: str  # the conversation's mode (handoff's mirror): `human` while a person owns it
    order_id: uuid.UUID | None  # the order this conversation is building
    summary: str
    recent: list[dict[str, Any]]
    stored: int = 0  # turns in the store when read (whether appending more would fold some)
    # A person handed the conversation back lately: some customer messages may have been theirs to answer.
    handed_back: bool = False


def state_keys(tenant_id: uuid.UUID, conversation_id: str) -> list[str]:
    """The keys a turn reads before it answers, in the order `state_of` takes their values; the burst buffer's
    claim reads them in its own step (`burst.py`)."""
    return [
        conversation_mode_key(tenant_id, conversation_id),
        _order_key(tenant_id, conversation_id),
        turns_key(tenant_id, conversation_id),
        _summary_key(tenant_id, conversation_id),
    ]


def state_of(mode: Any, order: Any, raw_turns: list[Any], previous: Any) -> TurnState:
    summary, recent = _fitted(raw_turns, previous)
    return TurnState(mode_of(mode), _order_id(order), summary, recent, len(raw_turns), handed_back(mode))


async def turn_state(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> TurnState:
    """The mode, the current order and the memory as one snapshot, where they took three round trips."""
    mode_key, order_key, turns_key, summary_key = state_keys(tenant_id, conversation_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(mode_key)
        pipe.get(order_key)
        pipe.lrange(turns_key, 0, -1)
        pipe.get(summary_key)
        mode, order, raw_turns, previous = await pipe.execute()
    return state_of(mode, order, raw_turns, previous)


async def recent_turns(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> list[dict[str, Any]]:
    return (await context(redis, tenant_id, conversation_id))[1]


def stored(turns: Sequence[dict[str, Any]]) -> list[str]:
    return [json.dumps(turn) for turn in turns]


async def remember(redis: Redis, tenant_id: uuid.UUID, conversation_id: str, *turns: dict[str, Any]) -> None:
    key = turns_key(tenant_id, conversation_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, *stored(turns))
        pipe.expire(key, TTL_SECONDS)
        length, _ = await pipe.execute()
    # RPUSH answers with the new length: the overflow check needs no round trip of its own.
    await fold_overflow(redis, tenant_id, conversation_id, length=int(length))


async def fold_overflow(redis: Redis, tenant_id: uuid.UUID, conversation_id: str, *, length: int | None = None) -> None:
    key = turns_key(tenant_id, conversation_id)
    overflow = (int(await redis.llen(key)) if length is None else length) - MAX_STORED_TURNS
    if overflow > 0:
        # Turns leaving the store are folded into the running summary, not forgotten.
        popped = await redis.lpop(key, overflow)
        dropped = [json.loads(str(raw)) for raw in (popped if isinstance(popped, list) else [])]
        summary_key = _summary_key(tenant_id, conversation_id)
        previous = await redis.get(summary_key) or ""
        await redis.set(summary_key, summarize(dropped, str(previous)), ex=TTL_SECONDS)


def _is_tool_turn(turn: dict[str, Any]) -> bool:
    return turn.get("role") == "tool" or bool(turn.get("tool_calls"))


async def resume_after_handoff(
    redis: Redis, tenant_id: uuid.UUID, conversation_id: str, *, ticket_id: str, turns: Sequence[dict[str, Any]]
) -> bool:
    """Hand the conversation back to the AI: drop tool exchanges from before the handoff (their results
    describe a state a person may since have changed) and append what happened meanwhile.

    Once per ticket (a redelivered `resolved` finds its mark), and atomic against a turn appended
    at the same moment (WATCH): the rewrite retries rather than losing that turn.
    """
    key = turns_key(tenant_id, conversation_id)
    mark = f"agent:handoff-resumed:{tenant_id}:{ticket_id}"
    async with redis.pipeline(transaction=True) as pipe:
        while True:
            try:
                await pipe.watch(key, mark)
                if await pipe.exists(mark):
                    return False
                stored = [json.loads(raw) for raw in await pipe.lrange(key, 0, -1)]
                resumed = [json.dumps(turn) for turn in stored if not _is_tool_turn(turn)]
                resumed += [json.dumps(turn) for turn in turns]
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.delete(key)
                if resumed:
                    pipe.rpush(key, *resumed)
                    pipe.expire(key, TTL_SECONDS)
                pipe.set(mark, "1", ex=TTL_SECONDS)
                await pipe.execute()
                break
            except WatchError:
                continue
    await fold_overflow(redis, tenant_id, conversation_id)
    return True


def _order_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    return f"agent:order:{tenant_id}:{conversation_id}"


async def current_order_id(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> uuid.UUID | None:
    return _order_id(await redis.get(_order_key(tenant_id, conversation_id)))


def _order_id(value: bytes | str | None) -> uuid.UUID | None:
    if isinstance(value, bytes):
        value = value.decode()
    return uuid.UUID(value) if value else None


async def set_current_order(
    redis: Redis, tenant_id: uuid.UUID, conversation_id: str, order_id: uuid.UUID | None
) -> None:
    if order_id is None:
        await redis.delete(_order_key(tenant_id, conversation_id))
    else:
        await redis.set(_order_key(tenant_id, conversation_id), str(order_id), ex=TTL_SECONDS)


def _order_conversation_key(tenant_id: uuid.UUID, order_id: uuid.UUID) -> str:
    return f"agent:order-conversation:{tenant_id}:{order_id}"


async def remember_order_conversation(redis: Redis, message: InboundMessage, order_id: uuid.UUID) -> None:
    """Where to tell the customer about this order later (payment link, a refusal)."""
    address = {
        "conversation_id": message.conversation_id,
        "channel": message.channel.value,
        "channel_account_id": message.channel_account_id,
        "customer_id": message.customer_id,
        "correlation_id": str(message.correlation_id),
    }
    await redis.set(_order_conversation_key(message.tenant_id, order_id), json.dumps(address), ex=TTL_SECONDS)


async def order_conversation(redis: Redis, tenant_id: uuid.UUID, order_id: uuid.UUID) -> dict[str, str] | None:
    raw = await redis.get(_order_conversation_key(tenant_id, order_id))
    if not raw:
        return None
    data: dict[str, str] = json.loads(raw)
    return data


def _left_to_person_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    return f"agent:left-to-person:{tenant_id}:{conversation_id}"


async def leave_to_person(redis: Redis, messages: Sequence[InboundMessage]) -> None:
    """Remember the customer messages a turn left unanswered because a person owned the conversation: at the
    handback they are the AI's to answer if the person left them unanswered, even when handoff's inbox recorded
    them too late for the person to have had them before them (handoff's `handed` set)."""
    if not messages:
        return
    key = _left_to_person_key(messages[-1].tenant_id, messages[-1].conversation_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(key, *(str(m.event_id) for m in messages))
        pipe.expire(key, TTL_SECONDS)
        await pipe.execute()


async def left_to_person(
    redis: Redis, tenant_id: uuid.UUID, conversation_id: str, event_ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of these messages a turn left to a person (`leave_to_person`)."""
    return await members_among(redis, _left_to_person_key(tenant_id, conversation_id), event_ids)
