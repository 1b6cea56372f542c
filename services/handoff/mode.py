"""Redis mirror of conversation mode: key `mode:{tenant_id}:{conversation_id}` holds "human"; absent means "ai".

The convention other services read (the agent before replying, the sender before sending
an author=ai message): `tenant_id` is the UUID in its canonical `str(uuid)` form (lowercase,
hyphenated), `conversation_id` is the envelope's conversation id as is. The value is the
string "human"; no key means "ai". A key written after a commit has no expiry: a TTL would
silently hand a conversation back to the AI while a person still owns it. The one key with an
expiry is a request's hold, written before its transaction (`hold_human`): should that request
never commit, the hold lapses instead of silencing the conversation for good. The truth lives in
the `handoff_modes` table; handoff writes this mirror after each commit and reconciles it with the
table on start and periodically (`services/handoff/mirror.py`).
"""

from typing import Final
from uuid import UUID

from redis.asyncio import Redis

AI: Final = "ai"
HUMAN: Final = "human"


def mode_key(tenant_id: UUID, conversation_id: str) -> str:
    return f"mode:{tenant_id}:{conversation_id}"


async def set_mode(redis: Redis, tenant_id: UUID, conversation_id: str, mode: str) -> None:
    """Mirror `mode` ("ai" or "human"); "ai" deletes the key, since absence already means ai."""
    key = mode_key(tenant_id, conversation_id)
    if mode == HUMAN:
        await redis.set(key, HUMAN)
    elif mode == AI:
        await redis.delete(key)
    else:
        raise ValueError(f"unknown conversation mode {mode!r}")


async def hold_human(redis: Redis, tenant_id: UUID, conversation_id: str, seconds: float) -> None:
    """Mirror "human" for at most `seconds`, unless the key is already there.

    For a request before its transaction commits: the commit's own write then makes it lasting. NX leaves a
    lasting "human" (a person already owns the conversation) without the expiry this would add to it.
    """
    await redis.set(mode_key(tenant_id, conversation_id), HUMAN, px=max(1, int(seconds * 1000)), nx=True)


async def get_mode(redis: Redis, tenant_id: UUID, conversation_id: str) -> str:
    return mode_of(await redis.get(mode_key(tenant_id, conversation_id)))


def mode_of(value: bytes | str | None) -> str:
    """The mode a value of the key stands for."""
    if isinstance(value, bytes):
        value = value.decode()
    # Anything but "human" reads as ai, matching what the agent and sender assume.
    return HUMAN if value == HUMAN else AI
