"""Where the Stripe sandbox keeps its sessions (Redis): safe read-modify-write, lookups, idempotency keys."""

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Final

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import WatchError

from sellmesh.sandbox import stripe_objects as objects
from sellmesh.sandbox.stripe_events import EventLog
from sellmesh.sandbox.stripe_objects import Emitted, Record, StripeApiError

IDEMPOTENCY_TTL_SECONDS: Final = 24 * 3600  # Stripe prunes keys after 24 h
CLAIM_TTL_SECONDS: Final = 60
SESSION_TTL_SECONDS: Final = 30 * 24 * 3600


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class SandboxStore:
    """Sessions are visible only in the account (`Stripe-Account`, or none) they were created in."""

    def __init__(self, redis: Redis, *, prefix: str, events: EventLog, clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.prefix = prefix
        self.events = events
        self.clock = clock

    def key(self, kind: str, object_id: str) -> str:
        return f"{self.prefix}{kind}:{object_id}"

    async def add(self, record: Record) -> None:
        await self.redis.set(self.key("session", record["session"]["id"]), json.dumps(record), ex=SESSION_TTL_SECONDS)

    async def get(self, session_id: str, account: str | None) -> Record:
        """The session as it stands now; one past its expiry is expired (and its event recorded) on this read."""
        raw = await self.redis.get(self.key("session", session_id))
        record: Record | None = None if raw is None else json.loads(raw)
        if record is None or record.get("account") != account:
            raise objects.missing("checkout.session", session_id)
        if record["session"]["status"] == "open" and self.clock() >= record["session"]["expires_at"]:
            return await self.change(session_id, lambda _record, _now: [], account=account)
        return record

    async def change(self, session_id: str, change: Callable[[Record, int], Emitted], *, account: str | None) -> Record:
        """Read-modify-write under WATCH, so processes sharing one Redis never lose an update; then log its events."""
        key = self.key("session", session_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)  # executes at once while watching
                    record: Record | None = None if raw is None else json.loads(raw)
                    if record is None or record.get("account") != account:
                        raise objects.missing("checkout.session", session_id)
                    now = int(self.clock())
                    emitted = objects.lapse(record, now) + change(record, now)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, json.dumps(record), keepttl=True)
                    if record.get("charge"):
                        charge = record["charge"]
                        pipe.set(self.key("charge", charge["id"]), session_id, ex=SESSION_TTL_SECONDS)
                        pipe.set(self.key("pi", charge["payment_intent"]), session_id, ex=SESSION_TTL_SECONDS)
                    await pipe.execute()
                    break
                except WatchError:
                    continue
        account = record.get("account")
        await self.events.record([objects.event(kind, obj, now=now, account=account) for kind, obj in emitted])
        return record

    async def find(self, kind: str, object_id: str, account: str | None) -> Record | None:
        """The session a charge (`charge`) or PaymentIntent (`pi`) belongs to, in this account."""
        session_id = await self.redis.get(self.key(kind, object_id))
        if session_id is None:
            return None
        try:
            return await self.get(_text(session_id), account)
        except StripeApiError:
            return None

    async def idempotent(
        self, request: Request, scope: str, params: Record, run: Callable[[], Awaitable[Record]]
    ) -> Response:
        """Stripe's rule: a key replays the first successful response; reusing it with other params is an error.

        `scope` names the caller (API key and Connect account); only its hash is stored.
        """
        key = request.headers.get("idempotency-key")
        if key is None:
            return JSONResponse(await run())
        slot = f"{self.prefix}idempotency:{hashlib.sha256(scope.encode()).hexdigest()[:16]}:"
        slot += hashlib.sha256(key.encode()).hexdigest()
        fingerprint = hashlib.sha256(json.dumps([request.url.path, params], sort_keys=True).encode()).hexdigest()
        claim = json.dumps({"fingerprint": fingerprint, "body": None})
        if not await self.redis.set(slot, claim, nx=True, ex=CLAIM_TTL_SECONDS):
            stored = json.loads(await self.redis.get(slot) or claim)
            if stored["fingerprint"] != fingerprint:
                message = "Keys for idempotent requests can only be used with the same parameters they were first used"
                raise StripeApiError(400, message, kind="idempotency_error")
            if stored["body"] is None:
                raise StripeApiError(409, "A request with this idempotency key is running", kind="idempotency_error")
            return JSONResponse(stored["body"], headers={"Idempotent-Replayed": "true"})
        try:
            body = await run()
        except BaseException:
            await self.redis.delete(slot)  # as at Stripe, a request that failed validation stores nothing
            raise
        await self.redis.set(slot, json.dumps({"fingerprint": fingerprint, "body": body}), ex=IDEMPOTENCY_TTL_SECONDS)
        return JSONResponse(body)
