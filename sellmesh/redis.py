"""The Redis client factory; one client per process, closed on shutdown."""

from redis.asyncio import Redis


def make_redis(url: str) -> "Redis":
    return Redis.from_url(url, decode_responses=True, socket_timeout=5, health_check_interval=30)
