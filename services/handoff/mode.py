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

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

from redis.asyncio import Redis

from sellmesh.redis import members_among

AI: Final = "ai"
HUMAN: Final = "human"
# A conversation handed back holds "ai:<ms>" (the handback's time, epoch milliseconds) for this long, and the
# event ids of the customer's messages the person had before them in `handed_key`: a message the agent reads
# only now (it lagged, or restarted) was the person's to answer. Longer than any backlog an agent catches up on.
HANDED_BACK_SECONDS: Final = 7 * 24 * 3600
_HANDED_BACK: Final = "ai:"
# "ai" removes a "human" (a person's key, or a request's hold) and nothing else: a handback's "ai:<ms>" stays
# when a redelivered command writes "ai" again. A hold that replaced an "ai:<ms>" (KEYS[2]) puts it back, so a
# request that never committed does not erase the last handback.
_DELETE_HUMAN: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  local before = redis.call('GET', KEYS[2])
  redis.call('DEL', KEYS[2])
  if before then
    redis.call('SET', KEYS[1], before, 'EX', ARGV[2])
  else
    redis.call('DEL', KEYS[1])
  end
  return 1
end
return 0
"""

# A request's hold: "human" for a while unless a person already owns the conversation; an "ai:<ms>" it replaces
# is kept beside it (KEYS[2]) for `_DELETE_HUMAN` to restore.
_HOLD: Final = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then
  if current and string.sub(current, 1, 3) == 'ai:' then
    redis.call('SET', KEYS[2], current, 'EX', ARGV[3])
  end
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 0
"""

# The reconcile's write: "human" over an absent key or a hold, never over an "ai:<ms>" a handback wrote since the
# reconcile read the table.
_HUMAN_UNLESS_HANDED_BACK: Final = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, 3) == 'ai:' and (tonumber(string.sub(current, 4)) or 0) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def mode_key(tenant_id: UUID, conversation_id: str) -> str:
    return f"mode:{tenant_id}:{conversation_id}"


def _before_hold_key(tenant_id: UUID, conversation_id: str) -> str:
    return f"mode-before-hold:{tenant_id}:{conversation_id}"


def handed_key(tenant_id: UUID, conversation_id: str) -> str:
    """The set of customer message event ids the person had before them at the last handback."""
    return f"handed:{tenant_id}:{conversation_id}"


async def set_mode(
    redis: Redis,
    tenant_id: UUID,
    conversation_id: str,
    mode: str,
    *,
    handed: Sequence[UUID] | None = None,
) -> None:
    """Mirror `mode` ("ai" or "human"). "ai" removes "human", since absence already means ai. A handback
    (`handed`: the customer messages the person had before them) writes "ai:<ms>", which every reader takes for
    ai, and the set of those messages beside it (`handed_key`)."""
    key = mode_key(tenant_id, conversation_id)
    if mode == HUMAN:
        await redis.set(key, HUMAN)
    elif mode == AI and handed is not None:
        # The moment of writing, not the command's: the reconcile compares it with when it read the table.
        millis = int(datetime.now(UTC).timestamp() * 1000)
        ids = handed_key(tenant_id, conversation_id)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(ids)
            if handed:
                pipe.sadd(ids, *[str(event_id) for event_id in handed])
                pipe.expire(ids, HANDED_BACK_SECONDS)
            pipe.set(key, f"{_HANDED_BACK}{millis}", ex=HANDED_BACK_SECONDS)
            await pipe.execute()
    elif mode == AI:
        await redis.eval(
            _DELETE_HUMAN, 2, key, _before_hold_key(tenant_id, conversation_id), HUMAN, HANDED_BACK_SECONDS
        )
    else:
        raise ValueError(f"unknown conversation mode {mode!r}")


def handed_back(value: bytes | str | None) -> bool:
    """Whether the mirror's value says a person handed the conversation back lately (`handed_key` is worth a look)."""
    if isinstance(value, bytes):
        value = value.decode()
    return bool(value) and str(value).startswith(_HANDED_BACK)


async def handed_to_person(redis: Redis, tenant_id: UUID, conversation_id: str, event_ids: Sequence[UUID]) -> set[UUID]:
    """Which of these customer messages the person had before them at the last handback."""
    return await members_among(redis, handed_key(tenant_id, conversation_id), event_ids)


async def hold_human(redis: Redis, tenant_id: UUID, conversation_id: str, seconds: float) -> None:
    """Mirror "human" for at most `seconds`, unless the key holds "human" already.

    For a request before its transaction commits: the commit's own write then makes it lasting. NX leaves a
    lasting "human" (a person already owns the conversation) without the expiry this would add to it; a
    handback's "ai:<ms>" is replaced, since the request is about to take the conversation back to a person.
    """
    await redis.eval(
        _HOLD,
        2,
        mode_key(tenant_id, conversation_id),
        _before_hold_key(tenant_id, conversation_id),
        HUMAN,
        max(1, int(seconds * 1000)),
        HANDED_BACK_SECONDS,
    )


async def mirror_human_unless_handed_back(
    redis: Redis, tenant_id: UUID, conversation_id: str, *, read_at: datetime
) -> bool:
    """The reconcile's write of a conversation its read of the table (at `read_at`) found with a person: False when
    a handback wrote "ai:<ms>" since, which the reconcile's second read of the table then settles. An older marker
    (a Redis restored from a snapshot) is overwritten: the table says a person owns the conversation now."""
    since = int(read_at.timestamp() * 1000)
    return bool(await redis.eval(_HUMAN_UNLESS_HANDED_BACK, 1, mode_key(tenant_id, conversation_id), HUMAN, since))


async def get_mode(redis: Redis, tenant_id: UUID, conversation_id: str) -> str:
    return mode_of(await redis.get(mode_key(tenant_id, conversation_id)))


def mode_of(value: bytes | str | None) -> str:
    """The mode a value of the key stands for."""
    if isinstance(value, bytes):
        value = value.decode()
    # Anything but "human" reads as ai, matching what the agent and sender assume.
    return HUMAN if value == HUMAN else AI
