"""The per-account send bucket against real Redis: capacity holds, senders wait, accounts are independent."""

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from services.ingest.ratelimit import Hold, RateLimited, SendRateLimiter

pytestmark = pytest.mark.integration


def account() -> str:
    return str(uuid.uuid4())


async def granted_now(limiter: SendRateLimiter, key: str, tries: int) -> int:
    return sum([await limiter.try_acquire(key) == 0 for _ in range(tries)])


async def test_a_full_bucket_grants_exactly_its_capacity_at_once(redis: Redis) -> None:
    limiter = SendRateLimiter(redis, rate_per_second=1.0, burst=5)
    key = account()
    assert await granted_now(limiter, key, 20) == 5
    assert 0 < await limiter.try_acquire(key) <= 1.0


async def test_an_idle_bucket_never_refills_beyond_its_capacity(redis: Redis) -> None:
    limiter = SendRateLimiter(redis, rate_per_second=100.0, burst=3)
    key = account()
    assert await granted_now(limiter, key, 3) == 3
    await asyncio.sleep(0.2)  # 20 tokens' worth of time
    assert await granted_now(limiter, key, 10) == 3


async def test_acquire_waits_for_the_next_token_instead_of_failing(redis: Redis) -> None:
    limiter = SendRateLimiter(redis, rate_per_second=20.0, burst=2)
    key = account()
    started = time.monotonic()
    for _ in range(6):
        await limiter.acquire(key)
    # Two from the burst, then one every 50 ms.
    assert time.monotonic() - started >= 0.18


async def test_concurrent_senders_share_one_bucket_without_overdrawing_it(redis: Redis) -> None:
    limiter = SendRateLimiter(redis, rate_per_second=50.0, burst=10)
    key = account()
    started = time.monotonic()
    finished: list[float] = []

    async def send() -> None:
        await limiter.acquire(key)
        finished.append(time.monotonic() - started)

    await asyncio.gather(*(send() for _ in range(30)))
    assert len(finished) == 30
    # 10 at once, then 20 more at 50/s: at least 0.4 s, and never more than burst + rate * t by time t.
    assert max(finished) >= 0.38
    for t in (0.1, 0.2, 0.3):
        assert sum(1 for f in finished if f <= t) <= 10 + 50 * t + 1


async def test_one_accounts_burst_does_not_slow_another_account(redis: Redis) -> None:
    limiter = SendRateLimiter(redis, rate_per_second=1.0, burst=2)
    busy, quiet = account(), account()
    assert await granted_now(limiter, busy, 10) == 2
    started = time.monotonic()
    await limiter.acquire(quiet)
    await limiter.acquire(quiet)
    assert time.monotonic() - started < 0.1


async def test_a_wait_longer_than_allowed_raises_a_retryable_error(redis: Redis) -> None:
    limiter = SendRateLimiter(redis, rate_per_second=0.5, burst=1, max_wait_seconds=0.1)
    key = account()
    await limiter.acquire(key)
    started = time.monotonic()
    with pytest.raises(RateLimited):
        await limiter.acquire(key)
    assert time.monotonic() - started < 1.0


async def test_the_bucket_key_expires_once_it_would_be_full_again(redis: Redis) -> None:
    limiter = SendRateLimiter(redis, rate_per_second=10.0, burst=5)
    key = account()
    await limiter.acquire(key)
    ttl_ms = await redis.pttl(limiter.key(key))
    assert 0 < ttl_ms <= 1500


async def test_a_hold_stops_a_send_before_it_takes_a_token(redis: Redis) -> None:
    # One token, refilled only after a second, and no waiting for it: a token taken by a held send would show.
    limiter = SendRateLimiter(redis, rate_per_second=1.0, burst=1, max_wait_seconds=0)
    key, hold = account(), Hold(f"hold:{uuid.uuid4()}", "human")
    await redis.set(hold.key, "human", ex=60)
    assert await limiter.try_acquire(key, hold) is None
    assert await limiter.acquire(key, hold) is False
    assert not await redis.exists(limiter.key(key))
    # The bucket's one token is still there for a send the hold does not stop.
    await redis.set(hold.key, "ai", ex=60)
    assert await limiter.acquire(key, hold) is True
    wait = await limiter.try_acquire(key)
    assert wait is not None and wait > 0
