"""The tenant's AI-reply counters in Redis: one per calendar month (UTC) and one per minute, shared by all replicas."""

import uuid
from datetime import UTC, datetime

from redis.asyncio import Redis

from services.agent.plan import Plan, QuotaOk, QuotaSpent, decide_quota

MONTH_TTL_SECONDS = 35 * 24 * 3600
MINUTE_TTL_SECONDS = 120

# Mirrors decide_quota, inside Redis so that concurrent replies never overdraw: a script runs alone.
# A refusal increments nothing. Returns {taken (0/1), month count, minute count}; the counts are
# after the take when taken, else as found.
TAKE = """
local month = tonumber(redis.call('GET', KEYS[1]) or '0')
local minute = tonumber(redis.call('GET', KEYS[2]) or '0')
if month >= tonumber(ARGV[1]) or minute >= tonumber(ARGV[2]) then
  return {0, month, minute}
end
month = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
minute = redis.call('INCR', KEYS[2])
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
return {1, month, minute}
"""


def _utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def month_key(tenant_id: uuid.UUID, now: datetime) -> str:
    return f"agent:quota:{tenant_id}:{_utc(now):%Y-%m}"


def minute_key(tenant_id: uuid.UUID, now: datetime) -> str:
    return f"agent:rate:{tenant_id}:{_utc(now):%Y%m%d%H%M}"


class QuotaCounter:
    """Counts AI replies per tenant; `take` either counts one more reply or refuses, never both."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._take = redis.register_script(TAKE)

    async def take(self, tenant_id: uuid.UUID, plan: Plan, now: datetime) -> QuotaOk | QuotaSpent:
        keys = [month_key(tenant_id, now), minute_key(tenant_id, now)]
        args = [plan.monthly_ai_replies, plan.messages_per_minute, MONTH_TTL_SECONDS, MINUTE_TTL_SECONDS]
        taken, month, minute = (int(value) for value in await self._take(keys=keys, args=args))
        if taken:
            return QuotaOk(used_this_month=month, used_this_minute=minute)
        return decide_quota(plan, month, minute)

    async def usage(self, tenant_id: uuid.UUID, now: datetime, plan: Plan | None = None) -> dict[str, int | str]:
        """This month's and this minute's counts, with the plan's limits and what is left when a plan is given."""
        month, minute = await self.redis.mget([month_key(tenant_id, now), minute_key(tenant_id, now)])
        used: dict[str, int | str] = {
            "month": f"{_utc(now):%Y-%m}",
            "ai_replies_this_month": int(month or 0),
            "messages_this_minute": int(minute or 0),
        }
        if plan is not None:
            used |= {
                "plan": plan.name,
                "monthly_ai_replies": plan.monthly_ai_replies,
                "messages_per_minute": plan.messages_per_minute,
                "ai_replies_left_this_month": max(0, plan.monthly_ai_replies - int(month or 0)),
            }
        return used
