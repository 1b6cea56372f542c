"""Read-only view of who is in charge of a conversation, for the agent and the sender."""

import uuid

from redis.asyncio import Redis

from services.handoff.mode import get_mode


async def conversation_mode(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> str:
    """`human` while a person owns the conversation, else `ai` (the Redis mirror of handoff's table)."""
    return await get_mode(redis, tenant_id, conversation_id)
