"""Requests per API key in a fixed window, counted in Redis so every gateway process shares the count."""

import math
import uuid

from redis.asyncio import Redis

from sellmesh.redis import count_within


class RateLimiter:
    def __init__(self, redis: Redis, *, limit: int, window_seconds: int = 60) -> None:
        self.redis = redis
        self.limit = limit
        self.window_seconds = window_seconds

    async def retry_after(self, key_id: uuid.UUID, *, now: float) -> int | None:
        """Count one request; None when it fits, else the whole seconds until the window ends."""
        window = int(now // self.window_seconds)
        counter = f"gateway:ratelimit:{key_id}:{window}"
        # Twice the window: the key outlives its window even if this process's clock runs a little fast.
        count = await count_within(self.redis, counter, self.window_seconds * 2)
        if count <= self.limit:
            return None
        return max(1, math.ceil((window + 1) * self.window_seconds - now))
