"""Keeping the Redis mode mirror equal to the `handoff_modes` table: at start, then every few minutes.

The mirror drifts two ways. A flushed or replaced Redis forgets who is with a person, and the AI would answer
over them. And a handback whose key delete failed on every attempt (Redis down for the whole retry budget)
leaves a lasting "human" with no ticket behind it: the AI stays quiet and nobody answers, for good. The
reconcile writes every human conversation and deletes lasting "human" keys the table no longer backs. A key
with an expiry is a request's hold before its commit (`mode.hold_human`) and is left to lapse or be made
lasting by that commit.
"""

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from redis.asyncio import Redis
from sqlalchemy import Engine

from sellmesh.db import in_thread, session_scope
from sellmesh.tasks import cancel_and_wait
from services.handoff import mode
from services.handoff.store import HandoffStore

log = logging.getLogger(__name__)

Conversation = tuple[uuid.UUID, str]

_KEY_PREFIX: Final = "mode:"
CLOCK_MARGIN_SECONDS: Final = 60
# Only a lasting "human": a hold (with an expiry) belongs to a request still on its way to its commit.
_DELETE_IF_LASTING: Final = """
if redis.call('PTTL', KEYS[1]) == -1 and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class MirrorReport:
    human: int
    stale_deleted: int


def _human_conversations(engine: Engine) -> list[Conversation]:
    with session_scope(engine) as session:
        return HandoffStore(session).human_conversations()


def conversation_of(key: str | bytes) -> Conversation | None:
    """The (tenant, conversation) a mirror key names; None for a key that is not one (left alone)."""
    text = key.decode() if isinstance(key, bytes) else key
    if not text.startswith(_KEY_PREFIX):
        return None
    tenant, sep, conversation = text[len(_KEY_PREFIX) :].partition(":")
    if not sep or not conversation:
        return None
    try:
        tenant_id = uuid.UUID(tenant)
    except ValueError:
        return None
    # The writers' canonical form only: another spelling of the same tenant is not a key anyone reads.
    return (tenant_id, conversation) if str(tenant_id) == tenant else None


async def _mirrored(redis: Redis) -> list[Conversation]:
    found = []
    async for key in redis.scan_iter(match=f"{_KEY_PREFIX}*", count=1000):
        conversation = conversation_of(key)
        if conversation is not None:
            found.append(conversation)
    return found


async def reconcile_mode_mirror(*, engine: Engine, redis: Redis) -> MirrorReport:
    # A margin for clocks that differ between the replica writing a handback's marker and this one: a marker from
    # a Redis restored from a snapshot is older than that.
    read_at = datetime.now(UTC) - timedelta(seconds=CLOCK_MARGIN_SECONDS)
    human = set(await in_thread(_human_conversations, engine))
    for tenant_id, conversation_id in human:
        await mode.mirror_human_unless_handed_back(redis, tenant_id, conversation_id, read_at=read_at)
    deleted = set()
    for tenant_id, conversation_id in set(await _mirrored(redis)) - human:
        key = mode.mode_key(tenant_id, conversation_id)
        if await redis.eval(_DELETE_IF_LASTING, 1, key, mode.HUMAN):
            deleted.add((tenant_id, conversation_id))
    # Handback and request commit while this runs (another replica, a rolling deploy). A conversation handed
    # back since the first read may have had its key deleted before the write above; one handed to a person
    # since may have had its fresh key deleted by the sweep of stale ones. The table, read again, settles both.
    now_human = set(await in_thread(_human_conversations, engine))
    for tenant_id, conversation_id in human - now_human:
        await mode.set_mode(redis, tenant_id, conversation_id, mode.AI)
    for tenant_id, conversation_id in deleted & now_human:
        await mode.set_mode(redis, tenant_id, conversation_id, mode.HUMAN)
    report = MirrorReport(human=len(human & now_human), stale_deleted=len(deleted - now_human))
    if report.stale_deleted:
        log.warning("handoff mode mirror held conversations no ticket backs", extra={"report": report.__dict__})
    log.info("handoff mode mirror reconciled", extra={"report": report.__dict__})
    return report


class MirrorReconciler:
    """Reconciles once at start (before the subscribers run), then every `interval_seconds`."""

    def __init__(self, *, engine: Engine, redis: Redis, interval_seconds: float = 300.0) -> None:
        self.engine = engine
        self.redis = redis
        self.interval_seconds = interval_seconds
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> MirrorReport:
        return await reconcile_mode_mirror(engine=self.engine, redis=self.redis)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_seconds)
            try:
                await self.run_once()
            except Exception:
                log.exception("handoff mode mirror reconcile failed; trying again next interval")

    async def start(self) -> None:
        # A failure here fails the start, as before: a mirror that may lack human conversations must not serve.
        await self.run_once()
        self._task = asyncio.create_task(self._loop(), name="handoff-mirror")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
