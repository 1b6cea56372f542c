"""Customers type in fragments: buffer each conversation's messages and answer the whole burst once.

The inbound consumer only appends to the buffer (durable in Redis) and moves on; a scheduler
answers a conversation once it has been quiet for a moment. A message that arrives while a reply
is being written stays in the buffer and is answered in the next turn, never twice.
"""

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis

from schemas.channel import InboundMessage
from sellmesh.redis import count_within
from services.agent import turn_plan
from services.agent.memory import (
    MAX_STORED_TURNS,
    TurnState,
    fold_overflow,
    state_keys,
    state_of,
    stored,
    turns_key,
)
from services.agent.memory import TTL_SECONDS as MEMORY_TTL_SECONDS
from services.agent.metrics import UNREADABLE_ENTRIES
from services.handoff.query import HUMAN, conversation_mode_key

log = logging.getLogger(__name__)

DUE_KEY = "agent:burst:due"
# Where a buffered message's event id is marked. The same key the consumer's dedup mark used when it was set
# apart from the buffer, so a message answered before an upgrade is still known after it.
SEEN_PREFIX = "dedup:agent:inbound_message:"
BUFFER_TTL_SECONDS = 7 * 24 * 3600

# Buffer a message unless its event id was buffered before: the mark and the push are one step, so a
# redelivery (a crash before the offset commit, a replay) is never answered twice, and a message whose push
# never happened is never marked. One round trip for what took three (look up, push, mark).
_ADD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
return 1
"""

# Claim a due conversation: take its lock and push its due time past the lock's life, so a
# worker that dies mid-turn leaves the conversation due again once the lock expires. The same step reads what
# the turn needs first (mode, current order, memory: KEYS[4..7], `memory.state_keys`; the plan an earlier run
# of the turn kept: KEYS[8], or under the last entry's id as plans were once kept, `turn_plan.py`), one round
# trip for three.
# A due conversation with nothing buffered (its buffer expired) is no longer due: claimed, it would come due
# again after every lock life, for ever, and take a place in every poll's first page.
_CLAIM = """
local function legacy_plan(entry)
  local ok, message = pcall(cjson.decode, entry)
  if not ok or type(message) ~= 'table' or type(message['event_id']) ~= 'string' then return false end
  return redis.call('GET', ARGV[5] .. message['event_id'])
end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return nil end
local buffered = redis.call('LRANGE', KEYS[2], 0, -1)
if #buffered == 0 then
  if redis.call('EXISTS', KEYS[3]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
  return nil
end
if not redis.call('SET', KEYS[3], ARGV[3], 'NX', 'EX', ARGV[4]) then return nil end
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) + tonumber(ARGV[4]), ARGV[1])
return {
  buffered,
  redis.call('GET', KEYS[4]),
  redis.call('GET', KEYS[5]),
  redis.call('LRANGE', KEYS[6], 0, -1),
  redis.call('GET', KEYS[7]),
  redis.call('GET', KEYS[8]),
  legacy_plan(buffered[#buffered]),
}
"""

# Finish a turn: append its turns to the conversation's memory (KEYS[4], ARGV[6..]: answers with the memory's
# length, 0 when there were none), drop the messages it answered; anything newer makes the conversation due
# again. One round trip where remembering and finishing took two. A turn whose claim lapsed (-1) changes
# nothing: whoever holds the claim now took the same messages and trims them itself, and a trim from here too
# would drop a message that came after. A finished turn's plan (KEYS[5], and KEYS[6] where plans were once kept,
# `turn_plan.py`) is no longer needed.
_FINISH = """
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return -1 end
local length = 0
if #ARGV > 5 then
  length = redis.call('RPUSH', KEYS[4], unpack(ARGV, 6))
  redis.call('EXPIRE', KEYS[4], ARGV[5])
end
redis.call('LTRIM', KEYS[2], ARGV[2], -1)
redis.call('DEL', KEYS[3], KEYS[5], KEYS[6])
if redis.call('LLEN', KEYS[2]) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return length
"""


# Keep a turn's plan (KEYS[1]) for the holder of the claim (KEYS[2], ARGV[1]) only, unless one stands already;
# answers with the plan that stands, nil when the claim was lost. A run whose claim lapsed and whose turn the
# holder finished meanwhile would otherwise leave its plan behind, and the next turn would take it for its own.
# A new plan is not kept once a person took the conversation (the mode, KEYS[3], reads "human"): the mode was read
# at the claim, and a turn's model calls take seconds. A plan that stands was kept before, and is published.
_KEEP = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
local standing = redis.call('GET', KEYS[1])
if standing then return standing end
if redis.call('GET', KEYS[3]) == ARGV[4] then return ARGV[4] end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return ARGV[2]
"""


# Keep a claim alive while its turn runs: a live worker holds the conversation however slow the model is,
# and a dead one loses it within one lock life.
_RENEW = """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[1], 'XX', tonumber(ARGV[4]) + tonumber(ARGV[3]), ARGV[1])
return 1
"""


@dataclass(frozen=True)
class Burst:
    member: str
    token: str
    messages: list[InboundMessage]
    # How many buffered entries the claim saw (duplicates included): what `finish` drops.
    taken: int
    # The conversation's mode, order and memory, read in the claim's step (None for a burst made by hand).
    state: TurnState | None = None
    # What an earlier run of this turn kept (`turn_plan.py`); the burst is then the messages it answered.
    plan: turn_plan.TurnPlan | None = None

    @property
    def last(self) -> InboundMessage:
        return self.messages[-1]


class ClaimLost(Exception):
    """The turn's claim lapsed before it published anything: the worker holding it now answers the burst."""


class PersonTookOver(Exception):
    """A person took the conversation while the turn was planning: it publishes nothing, as if claimed then."""


@dataclass(frozen=True)
class Answered:
    """What a turn answered: the exchange to remember, and how many buffered entries it covered when that is not
    its whole burst (the plan that stood was another run's, made from fewer entries)."""

    remember: Sequence[dict[str, Any]] = ()
    taken: int | None = None


def _member(message: InboundMessage) -> str:
    return f"{message.tenant_id}:{message.conversation_id}"


# Claims that find a buffered entry they cannot read before it is dropped: a lock's life apart (15 s), so a
# rolling deploy's newer workers get a minute to claim what older ones cannot read.
UNREADABLE_PATIENCE = 5
UNREADABLE_WINDOW_SECONDS = 600


def _readable(entry: Any) -> InboundMessage | None:
    try:
        return InboundMessage.model_validate_json(entry)
    except ValidationError:
        return None


def _once_each(entries: list[InboundMessage]) -> list[InboundMessage]:
    """A redelivered fragment appears once."""
    seen: set[uuid.UUID] = set()
    messages = []
    for message in entries:
        if message.event_id not in seen:
            seen.add(message.event_id)
            messages.append(message)
    return messages


class BurstBuffer:
    def __init__(
        self, redis: Redis, *, quiet_seconds: float, seen_ttl_seconds: int = 8 * 24 * 3600, lock_seconds: int = 15
    ) -> None:
        self.redis = redis
        self.quiet_seconds = quiet_seconds
        # Longer than any redelivery or replay horizon (the mesh passes SELLMESH_DEDUP_TTL_SECONDS).
        self.seen_ttl_seconds = seen_ttl_seconds
        # Short, and renewed while the turn runs: a worker killed mid-turn delays its conversation this long.
        self.lock_seconds = lock_seconds
        self._add = redis.register_script(_ADD)
        self._claim = redis.register_script(_CLAIM)
        self._finish = redis.register_script(_FINISH)
        self._renew = redis.register_script(_RENEW)
        self._keep = redis.register_script(_KEEP)
        # Told, after each add, how long until that conversation is due: a scheduler in this process wakes then
        # instead of finding it on its next poll.
        self._due_listeners: list[Callable[[float], None]] = []

    def on_due(self, listener: Callable[[float], None]) -> None:
        self._due_listeners.append(listener)

    async def add(self, message: InboundMessage) -> bool:
        """Buffers the message and pushes its conversation's answer back by the quiet period (every fragment
        does); False, changing nothing, when this event id was buffered before."""
        member = _member(message)
        keys = [f"{SEEN_PREFIX}{message.event_id}", f"agent:burst:{member}", DUE_KEY]
        args: list[str | int | float] = [
            self.seen_ttl_seconds,
            message.model_dump_json(),
            BUFFER_TTL_SECONDS,
            time.time() + self.quiet_seconds,
            member,
        ]
        if not await self._add(keys=keys, args=args):
            return False
        for listener in self._due_listeners:
            listener(self.quiet_seconds)
        return True

    async def due(self, limit: int = 20) -> list[str]:
        members = await self.redis.zrangebyscore(DUE_KEY, "-inf", time.time(), start=0, num=limit)
        return [str(m) for m in members]

    async def claim(self, member: str) -> Burst | None:
        token = uuid.uuid4().hex
        tenant, _, conversation_id = member.partition(":")
        try:
            tenant_id = uuid.UUID(tenant)
        except ValueError:
            # Not a member `add` wrote: it would come due again on every poll and fail each time.
            log.error("dropping a due conversation that names no tenant", extra={"member": member[:80]})
            await self.redis.zrem(DUE_KEY, member)
            return None
        keys = [
            DUE_KEY,
            f"agent:burst:{member}",
            f"agent:burst-lock:{member}",
            *state_keys(tenant_id, conversation_id),
            turn_plan.plan_key(tenant_id, conversation_id),
        ]
        args: list[str | int | float] = [
            member,
            time.time(),
            token,
            self.lock_seconds,
            turn_plan.legacy_prefix(tenant_id),
        ]
        claimed = await self._claim(keys=keys, args=args)
        if not claimed:
            return None
        raw, mode, order, raw_turns, previous, kept, legacy = claimed
        entries = [entry for entry in map(_readable, raw) if entry is not None]
        if len(entries) < len(raw) and not await self._patience_spent(member):
            # Maybe a newer worker's, in a rolling deploy: left for another claim once the lock lapses.
            log.warning("a buffered message this worker cannot read; left for another worker")
            return None
        if len(entries) < len(raw):
            # No worker could read it in all those claims: every claim would fail on it, with the conversation's
            # later messages stuck behind. Dropped with this burst.
            UNREADABLE_ENTRIES.inc(len(raw) - len(entries))
            log.error(
                "buffered messages that cannot be read are dropped", extra={"unreadable": len(raw) - len(entries)}
            )
            if not entries:
                await self.finish(Burst(member, token, [], len(raw)))
                return None
            state = state_of(mode, order, raw_turns, previous)
            return Burst(member, token, _once_each(entries), len(raw), state, None)
        plan = await self._standing_plan(tenant_id, conversation_id, kept or legacy or None, entries)
        if plan is not None:
            # The retry answers what its plan answered; anything written since waits for a turn of its own.
            entries = entries[: plan.taken]
        messages = _once_each(entries)
        if not messages:
            return None
        return Burst(member, token, messages, len(entries), state_of(mode, order, raw_turns, previous), plan)

    async def _patience_spent(self, member: str) -> bool:
        """Whether this conversation's unreadable entries have been left for other workers often enough."""
        key = f"agent:unreadable:{member}"
        if await count_within(self.redis, key, UNREADABLE_WINDOW_SECONDS) < UNREADABLE_PATIENCE:
            return False
        await self.redis.delete(key)
        return True

    async def _standing_plan(
        self, tenant_id: uuid.UUID, conversation_id: str, kept: str | None, entries: list[InboundMessage]
    ) -> turn_plan.TurnPlan | None:
        """The plan an earlier run kept, while the buffer still begins with what it answered. Any other is
        deleted: planned for entries that are gone, it would answer the wrong messages."""
        if kept is None or not entries:
            return None
        try:
            plan = turn_plan.decode(kept, entries)
        except (ValueError, KeyError, TypeError):
            log.exception("dropping a turn plan that cannot be read")
            plan = None
        if plan is not None and plan.answers(entries):
            return plan
        if plan is not None:
            log.warning("dropping a turn plan whose messages are no longer buffered")
        await self.redis.delete(turn_plan.plan_key(tenant_id, conversation_id))
        return None

    async def keep_plan(self, burst: Burst, plan: turn_plan.TurnPlan) -> turn_plan.TurnPlan:
        """Keeps `plan` for this claim unless one stands already (a run whose claim lapsed planned first), and
        returns the one that stands; `ClaimLost` when this claim lapsed: its holder answers the burst."""
        last = burst.last
        keys = [
            turn_plan.plan_key(last.tenant_id, last.conversation_id),
            f"agent:burst-lock:{burst.member}",
            conversation_mode_key(last.tenant_id, last.conversation_id),
        ]
        encoded = turn_plan.encode(plan)
        standing = await self._keep(keys=keys, args=[burst.token, encoded, turn_plan.PLAN_TTL_SECONDS, HUMAN])
        if standing is None:
            raise ClaimLost(burst.member)
        if standing in (HUMAN, HUMAN.encode()):
            raise PersonTookOver(burst.member)
        if standing in (encoded, encoded.encode()):
            return plan
        return turn_plan.decode(standing, burst.messages)

    async def renew(self, burst: Burst) -> bool:
        """Extend the claim by one lock life; False when it was lost (expired and taken by another worker)."""
        keys = [DUE_KEY, f"agent:burst-lock:{burst.member}"]
        return bool(await self._renew(keys=keys, args=[burst.member, burst.token, self.lock_seconds, time.time()]))

    async def finish(self, burst: Burst, answered: Answered = Answered()) -> None:
        """Drop the answered messages and release the claim; the turn's exchange is appended to the conversation's
        memory in the same step, and only if the claim still holds (else the holder appends it)."""
        remember = answered.remember
        # Never past what this claim saw: anything behind it came after and is the next turn's.
        taken = burst.taken if answered.taken is None else min(answered.taken, burst.taken)
        if burst.messages:
            tenant_id, conversation_id = burst.last.tenant_id, burst.last.conversation_id
        else:  # only unreadable entries were claimed: the member names the conversation
            tenant, _, conversation_id = burst.member.partition(":")
            tenant_id = uuid.UUID(tenant)
        keys = [
            DUE_KEY,
            f"agent:burst:{burst.member}",
            f"agent:burst-lock:{burst.member}",
            turns_key(tenant_id, conversation_id),
            turn_plan.plan_key(tenant_id, conversation_id),
            f"{turn_plan.legacy_prefix(tenant_id)}{burst.last.event_id if burst.messages else 'none'}",
        ]
        args: list[str | int | float] = [
            burst.member,
            taken,
            burst.token,
            time.time(),
            MEMORY_TTL_SECONDS,
            *stored(remember),
        ]
        length = int(await self._finish(keys=keys, args=args))
        if length < 0:
            # Its next claimant answers the same messages, and republishes this turn's plan (`turn_plan.py`).
            log.warning("a turn finished after its claim lapsed; its messages are left to the claim's holder")
            return
        if length > MAX_STORED_TURNS:  # the turns leaving the store are folded into the summary
            await fold_overflow(self.redis, tenant_id, conversation_id, length=length)
