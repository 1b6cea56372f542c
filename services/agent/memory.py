"""Conversation memory in Redis: the recent turns of each conversation, bounded in count and age."""

import json
import uuid
from typing import Any

from redis.asyncio import Redis

from schemas.channel import InboundMessage

MAX_TURNS = 20
TTL_SECONDS = 30 * 24 * 3600


def _key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    return f"agent:memory:{tenant_id}:{conversation_id}"


async def recent_turns(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in await redis.lrange(_key(tenant_id, conversation_id), -MAX_TURNS, -1)]


async def remember(redis: Redis, tenant_id: uuid.UUID, conversation_id: str, *turns: dict[str, Any]) -> None:
    key = _key(tenant_id, conversation_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, *(json.dumps(turn) for turn in turns))
        pipe.ltrim(key, -MAX_TURNS, -1)
        pipe.expire(key, TTL_SECONDS)
        await pipe.execute()


def _order_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    return f"agent:order:{tenant_id}:{conversation_id}"


async def current_order_id(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> uuid.UUID | None:
    value = await redis.get(_order_key(tenant_id, conversation_id))
    return uuid.UUID(str(value)) if value else None


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
