"""The AI-reply counters against real Redis: limits hold, refusals consume nothing, keys expire, no overdraw."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from redis.asyncio import Redis

from services.agent.plan import Plan, QuotaOk, QuotaSpent
from services.agent.quota import MINUTE_TTL_SECONDS, MONTH_TTL_SECONDS, QuotaCounter, minute_key, month_key

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 31, 23, 59, 30, tzinfo=UTC)


def tenant() -> uuid.UUID:
    return uuid.uuid4()


async def test_takes_are_counted_in_the_month_and_the_minute(redis: Redis) -> None:
    counter, tenant_id = QuotaCounter(redis), tenant()
    plan = Plan("t", monthly_ai_replies=10, messages_per_minute=5)
    assert await counter.take(tenant_id, plan, NOW) == QuotaOk(used_this_month=1, used_this_minute=1)
    assert await counter.take(tenant_id, plan, NOW) == QuotaOk(used_this_month=2, used_this_minute=2)


async def test_a_spent_month_refuses_until_the_next_month(redis: Redis) -> None:
    counter, tenant_id = QuotaCounter(redis), tenant()
    plan = Plan("t", monthly_ai_replies=3, messages_per_minute=100)
    for minute in range(3):
        assert isinstance(await counter.take(tenant_id, plan, NOW - timedelta(minutes=minute)), QuotaOk)
    assert await counter.take(tenant_id, plan, NOW) == QuotaSpent("monthly_limit", 3)
    assert await counter.take(tenant_id, plan, NOW + timedelta(minutes=1)) == QuotaOk(1, 1)


async def test_a_full_minute_refuses_until_the_next_minute(redis: Redis) -> None:
    counter, tenant_id = QuotaCounter(redis), tenant()
    plan = Plan("t", monthly_ai_replies=100, messages_per_minute=2)
    earlier = NOW - timedelta(minutes=5)
    for _ in range(2):
        await counter.take(tenant_id, plan, earlier)
    assert await counter.take(tenant_id, plan, earlier) == QuotaSpent("minute_limit", 2)
    assert await counter.take(tenant_id, plan, earlier + timedelta(minutes=1)) == QuotaOk(3, 1)


async def test_a_refusal_consumes_nothing(redis: Redis) -> None:
    counter, tenant_id = QuotaCounter(redis), tenant()
    plan = Plan("t", monthly_ai_replies=100, messages_per_minute=1)
    await counter.take(tenant_id, plan, NOW)
    for _ in range(5):
        assert isinstance(await counter.take(tenant_id, plan, NOW), QuotaSpent)
    assert await counter.usage(tenant_id, NOW) == {
        "month": "2026-03",
        "ai_replies_this_month": 1,
        "messages_this_minute": 1,
    }


async def test_both_counters_get_an_expiry(redis: Redis) -> None:
    counter, tenant_id = QuotaCounter(redis), tenant()
    await counter.take(tenant_id, Plan("t", monthly_ai_replies=5, messages_per_minute=5), NOW)
    assert month_key(tenant_id, NOW) == f"agent:quota:{tenant_id}:2026-03"
    assert minute_key(tenant_id, NOW) == f"agent:rate:{tenant_id}:202603312359"
    assert MONTH_TTL_SECONDS - 5 < await redis.ttl(month_key(tenant_id, NOW)) <= MONTH_TTL_SECONDS
    assert MINUTE_TTL_SECONDS - 5 < await redis.ttl(minute_key(tenant_id, NOW)) <= MINUTE_TTL_SECONDS


async def test_keys_are_in_utc_whatever_the_callers_timezone(redis: Redis) -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    assert local.month == 4
    assert month_key(uuid.UUID(int=1), local) == month_key(uuid.UUID(int=1), NOW)


async def test_concurrent_takes_never_overdraw_the_minute(redis: Redis) -> None:
    counter, tenant_id = QuotaCounter(redis), tenant()
    plan = Plan("t", monthly_ai_replies=1000, messages_per_minute=20)
    results = await asyncio.gather(*(counter.take(tenant_id, plan, NOW) for _ in range(50)))
    assert sum(isinstance(r, QuotaOk) for r in results) == 20
    assert all(r == QuotaSpent("minute_limit", 20) for r in results if isinstance(r, QuotaSpent))
    assert (await counter.usage(tenant_id, NOW))["ai_replies_this_month"] == 20


async def test_one_tenants_usage_does_not_count_for_another(redis: Redis) -> None:
    counter, busy, quiet = QuotaCounter(redis), tenant(), tenant()
    plan = Plan("t", monthly_ai_replies=1, messages_per_minute=1)
    await counter.take(busy, plan, NOW)
    assert isinstance(await counter.take(busy, plan, NOW), QuotaSpent)
    assert await counter.take(quiet, plan, NOW) == QuotaOk(1, 1)


async def test_usage_with_a_plan_shows_limits_and_what_is_left(redis: Redis) -> None:
    counter, tenant_id = QuotaCounter(redis), tenant()
    plan = Plan("standard", monthly_ai_replies=5000, messages_per_minute=60)
    await counter.take(tenant_id, plan, NOW)
    assert await counter.usage(tenant_id, NOW, plan) == {
        "month": "2026-03",
        "ai_replies_this_month": 1,
        "messages_this_minute": 1,
        "plan": "standard",
        "monthly_ai_replies": 5000,
        "messages_per_minute": 60,
        "ai_replies_left_this_month": 4999,
    }
