"""The sandbox's event log: every session change as a Stripe event in Redis, listed like `GET /v1/events`,
and posted to a webhook URL signed exactly as Stripe signs (`t=...,v1=HMAC_SHA256(secret, f"{t}.{payload}")`)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
from redis.asyncio import Redis

from sellmesh.sandbox.stripe_form import FormError, FormValue, as_dict, as_list, as_str, as_uint, reject_unknown

log = logging.getLogger(__name__)

HISTORY_SECONDS: Final = 30 * 24 * 3600  # Stripe lists the last 30 days of events
LIST_PARAMS: Final = ("created", "type", "types", "limit", "starting_after")
RANGE_OPS: Final = ("gt", "gte", "lt", "lte")


def signature_header(payload: str, secret: str, *, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def _created_range(value: FormValue | None) -> tuple[int, int]:
    """`created=N` or `created[gte]=N&created[lt]=M` as an inclusive range of seconds."""
    if value is None:
        return 0, 2**53
    if isinstance(value, str):
        exact = as_uint(value, "created") or 0
        return exact, exact
    bounds = as_dict(value, "created")
    reject_unknown(bounds, RANGE_OPS, prefix="created")
    low, high = 0, 2**53
    for op, raw in bounds.items():
        n = as_uint(raw, f"created[{op}]") or 0
        low = max(low, n + (op == "gt")) if op in ("gt", "gte") else low
        high = min(high, n - (op == "lt")) if op in ("lt", "lte") else high
    return low, high


class EventLog:
    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        webhook_url: str | None,
        webhook_secret: str,
        http: httpx.AsyncClient | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.http = http
        self.clock = clock

    async def record(self, events: list[dict[str, Any]]) -> None:
        """Keep the events for listing (30 days), then post each to the webhook URL, if there is one."""
        for body in events:
            seq = await self.redis.incr(f"{self.prefix}events:seq")
            # Seconds, then arrival within the second: the list's order is the order things happened.
            score = body["created"] * 1_000_000 + seq % 1_000_000
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.set(f"{self.prefix}event:{body['id']}", json.dumps(body), ex=HISTORY_SECONDS)
                pipe.zadd(f"{self.prefix}events", {body["id"]: score})
                pipe.zremrangebyscore(f"{self.prefix}events", 0, (body["created"] - HISTORY_SECONDS) * 1_000_000)
                await pipe.execute()
        for body in events:
            await self.deliver(body)

    async def deliver(self, body: Mapping[str, Any]) -> bool:
        """One delivery attempt, as Stripe would make it; a failure is logged and left to the reader's sweep."""
        if self.webhook_url is None or self.http is None:
            return False
        payload = json.dumps(body)
        headers = {
            "content-type": "application/json",
            "stripe-signature": signature_header(payload, self.webhook_secret, timestamp=int(self.clock())),
        }
        try:
            response = await self.http.post(self.webhook_url, content=payload.encode(), headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            log.warning("sandbox webhook not delivered", extra={"event": body["id"], "error": repr(exc)[:200]})
            return False
        if response.status_code >= 300:
            log.warning("sandbox webhook refused", extra={"event": body["id"], "status": response.status_code})
        return response.status_code < 300

    async def get(self, event_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self.prefix}event:{event_id}")
        return None if raw is None else dict(json.loads(raw))

    async def list(self, params: dict[str, FormValue], *, account: str | None) -> dict[str, Any]:
        """Newest first, filtered by `created`, `type` or `types[]`, paged with `limit` and `starting_after`."""
        reject_unknown(params, LIST_PARAMS)
        if "type" in params and "types" in params:
            raise FormError("You may pass either `type` or `types`, but not both", param="types")
        types = {as_str(t, "types") for t in as_list(params.get("types"), "types")}
        if "type" in params:
            types = {as_str(params["type"], "type")}
        limit = as_uint(params.get("limit"), "limit") or 10
        if not 1 <= limit <= 100:
            raise FormError("limit must be between 1 and 100", param="limit")
        low, high = _created_range(params.get("created"))
        after = as_str(params.get("starting_after"), "starting_after")
        ids = await self.redis.zrevrangebyscore(f"{self.prefix}events", (high + 1) * 1_000_000 - 1, low * 1_000_000)
        page: list[dict[str, Any]] = []
        skipping = after is not None
        for raw_id in ids:
            event_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if skipping:
                skipping = event_id != after
                continue
            body = await self.get(event_id)
            if body is None or (types and body["type"] not in types) or body.get("account") != account:
                continue
            if len(page) == limit:
                return {"object": "list", "data": page, "has_more": True, "url": "/v1/events"}
            page.append(body)
        return {"object": "list", "data": page, "has_more": False, "url": "/v1/events"}
