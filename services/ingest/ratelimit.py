"""A Redis token bucket per channel account, so one tenant's burst never gets another's page throttled.

Meta's limits are per Page, per Instagram account and per WhatsApp number (PROTOCOLS A.7:
80 msg/s per number by default, about 300/s per Page [S]), and going over them extends the
block. The bucket lives in Redis so every sender replica draws from the same one.

A send may name a hold: a key whose value stops it (a person owning the conversation). The script checks it
before taking a token, in the same round trip, so the check costs none of its own and a stopped send takes
nothing from the bucket.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from sellmesh.subscriber import DependencyUnavailable

log = logging.getLogger(__name__)

# Unless KEYS[2] holds ARGV[3] (then -1, nothing taken): refill by the time elapsed since the last call,
# then take one token if there is one. Returns 0 when a token was taken, else the milliseconds until one
# will be there. Time is Redis's own clock, so replicas with skewed clocks share one bucket fairly.
# Atomic: a script runs alone.
TOKEN_BUCKET = """
if KEYS[2] and redis.call('GET', KEYS[2]) == ARGV[3] then
  return -1
end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return wait
"""


# The script's answer when the hold stops the send; `try_acquire` turns it into None.
HELD = -1


@dataclass(frozen=True)
class Hold:
    """Stop the send, taking no token, while `key` holds `value`."""

    key: str
    value: str


class RateLimited(DependencyUnavailable):
    """No token within the allowed wait: retryable, the subscriber backs off and tries again. Every message of the
    account would wait alike, so it is waited out like an outage rather than spending the message's attempts."""


class SendRateLimiter:
    """`acquire` waits for a token of the account's bucket; it never fails a send for a short burst."""

    def __init__(self, redis: Redis, *, rate_per_second: float, burst: int, max_wait_seconds: float = 30.0) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("the send rate must be positive and the burst at least 1")
        self.redis = redis
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.max_wait_seconds = max_wait_seconds
        self._script = redis.register_script(TOKEN_BUCKET)

    @staticmethod
    def key(account: str) -> str:
        return f"ingest:send-bucket:{account}"

    async def try_acquire(self, account: str, hold: Hold | None = None) -> float | None:
        """Take a token now and return 0, or return the seconds until one is due (taking nothing); None
        (taking nothing) while the hold's key holds its value, so no caller can mistake it for a wait."""
        keys: list[str] = [self.key(account)]
        args: list[float | str] = [self.rate_per_second, self.burst]
        if hold is not None:
            keys.append(hold.key)
            args.append(hold.value)
        wait_ms = int(await self._script(keys=keys, args=args))
        return None if wait_ms == HELD else wait_ms / 1000

    async def acquire(self, account: str, hold: Hold | None = None) -> bool:
        """Wait for a token and take it; False, with nothing taken, when the hold stops the send."""
        deadline = time.monotonic() + self.max_wait_seconds
        while (wait := await self.try_acquire(account, hold)) != 0:
            if wait is None:
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                raise RateLimited(f"no send token for {self.max_wait_seconds}s")
            log.debug("send rate limit reached; waiting", extra={"wait_seconds": wait})
            await asyncio.sleep(min(wait, left))
        return True
