"""The Redis client factory; one client per process, closed on shutdown."""

from collections.abc import Sequence
from uuid import UUID

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError, TimeoutError


def make_redis(url: str) -> "Redis":
    # A restart or failover drops every pooled connection; retrying on a fresh one for a few seconds
    # turns that into a pause instead of a failed handler per connection. A command whose reply was
    # lost may run twice: the writes here are idempotent or tolerate it (dedup marks, buffers
    # deduplicated by event id, counters).
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), retries=6),
        retry_on_error=[ConnectionError, TimeoutError],
    )


async def count_within(redis: "Redis", key: str, seconds: int) -> int:
    """Count one more under `key`, which lasts `seconds` from this count on; the count so far, this one included.
    One step (MULTI), so a key is never left counting without an expiry."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, seconds)
        count, _ = await pipe.execute()
    return int(count)


async def members_among(redis: "Redis", key: str, ids: Sequence[UUID]) -> set[UUID]:
    """Which of `ids` the set at `key` holds, in one round trip."""
    if not ids:
        return set()
    found = await redis.smismember(key, [str(i) for i in ids])
    return {i for i, member in zip(ids, found, strict=True) if member}
