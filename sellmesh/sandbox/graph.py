"""A sandbox of the Graph API send endpoints: records every send so demos and tests can read replies back."""

import json
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from redis.asyncio import Redis

SENDS_KEY = "sandbox:graph:sends"
MAX_KEPT = 10_000


class GraphSandbox:
    """WhatsApp (`/{phone_number_id}/messages`) and Messenger/Instagram (`/me/messages`) sends."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def record(self, entry: dict[str, Any]) -> None:
        # Redis, not process memory: with `sellmesh run` the sender and the HTTP edge may be apart.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(SENDS_KEY, json.dumps(entry))
            pipe.ltrim(SENDS_KEY, -MAX_KEPT, -1)
            await pipe.execute()

    async def sends(self, to: str | None) -> list[dict[str, Any]]:
        rows = [json.loads(raw) for raw in await self.redis.lrange(SENDS_KEY, 0, -1)]
        return [row for row in rows if to is None or row["to"] == to]

    def router(self) -> APIRouter:
        router = APIRouter(tags=["sandbox"])

        @router.post("/sandbox/graph/{version}/{account_id}/messages")
        async def send(
            version: str,
            account_id: str,
            request: Request,
            authorization: Annotated[str | None, Header()] = None,
        ) -> dict[str, Any]:
            if not authorization or not authorization.startswith("Bearer "):
                raise HTTPException(401, detail={"error": {"message": "missing access token", "code": 190}})
            try:
                body = json.loads(await request.body())
            except ValueError as exc:
                raise HTTPException(400, detail={"error": {"message": "body is not JSON", "code": 100}}) from exc
            message_id = f"sandbox.{uuid.uuid4().hex}"
            if account_id == "me":
                to = str(body.get("recipient", {}).get("id", ""))
                text = str(body.get("message", {}).get("text", ""))
                response: dict[str, Any] = {"recipient_id": to, "message_id": message_id}
            else:
                to = str(body.get("to", ""))
                text = str(body.get("text", {}).get("body", ""))
                response = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": message_id}],
                }
            if not to or not text:
                raise HTTPException(400, detail={"error": {"message": "recipient and text are required", "code": 100}})
            await self.record(
                {"to": to, "text": text, "account_id": account_id, "message_id": message_id, "at": time.time()}
            )
            return response

        @router.get("/sandbox/messages")
        async def messages(to: Annotated[str | None, Query(max_length=256)] = None) -> dict[str, Any]:
            return {"messages": await self.sends(to)}

        return router
