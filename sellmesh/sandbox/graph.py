"""A sandbox of the Graph API send endpoints: records every send so demos and tests can read replies back."""

import json
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

SENDS_KEY = "sandbox:graph:sends"
MAX_KEPT = 10_000


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def graph_error(status: int, message: str, code: int) -> JSONResponse:
    """Errors in the Graph API's own envelope, so clients classify them as they would Meta's."""
    return JSONResponse({"error": {"message": message, "type": "OAuthException", "code": code}}, status_code=status)


def whatsapp_entry(body: dict[str, Any]) -> dict[str, Any]:
    """What a WhatsApp send carries; `text` is the body, the caption (else the link) or the template name."""
    kind = str(body.get("type", "text"))
    part = _dict(body.get(kind))
    if kind == "template":
        text = part.get("name", "")
    elif kind == "image":
        text = part.get("caption") or part.get("link", "")
    elif kind == "interactive":
        text = _dict(part.get("body")).get("text", "")
    else:
        text = part.get("body", "")
    buttons = [_dict(_dict(b).get("reply")).get("title", "") for b in _list(_dict(part.get("action")).get("buttons"))]
    return {"kind": kind, "to": str(body.get("to", "")), "text": str(text), "buttons": buttons, "tag": None}


def messaging_entry(body: dict[str, Any]) -> dict[str, Any]:
    """What a Messenger/Instagram send carries; `text` is the text, or the image's url."""
    message = _dict(body.get("message"))
    attachment = _dict(message.get("attachment"))
    quick_replies = [str(_dict(q).get("title", "")) for q in _list(message.get("quick_replies"))]
    if attachment:
        kind, text = str(attachment.get("type", "")), _dict(attachment.get("payload")).get("url", "")
    else:
        kind, text = ("quick_replies" if quick_replies else "text"), message.get("text", "")
    return {
        "kind": kind,
        "to": str(_dict(body.get("recipient")).get("id", "")),
        "text": str(text),
        "buttons": quick_replies,
        "tag": body.get("tag"),
    }


class GraphSandbox:
    """WhatsApp (`/{phone_number_id}/messages`) and Messenger/Instagram (`/me/messages`) sends.

    Each recorded send keeps `kind` (text, image, interactive, template, quick_replies), `to`,
    `text`, the button titles and the message tag, so demos and tests can read replies back.
    """

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

        @router.post("/sandbox/graph/{version}/{account_id}/messages", response_model=None)
        async def send(
            version: str,
            account_id: str,
            request: Request,
            authorization: Annotated[str | None, Header()] = None,
        ) -> dict[str, Any] | JSONResponse:
            if not authorization or not authorization.startswith("Bearer "):
                return graph_error(401, "missing access token", 190)
            try:
                body = _dict(json.loads(await request.body()))
            except ValueError:
                return graph_error(400, "body is not JSON", 100)
            message_id = f"sandbox.{uuid.uuid4().hex}"
            entry = whatsapp_entry(body) if body.get("messaging_product") == "whatsapp" else messaging_entry(body)
            if not entry["to"] or not entry["text"]:
                return graph_error(400, "recipient and content are required", 100)
            if account_id == "me" or body.get("messaging_product") != "whatsapp":
                response: dict[str, Any] = {"recipient_id": entry["to"], "message_id": message_id}
            else:
                response = {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": entry["to"], "wa_id": entry["to"]}],
                    "messages": [{"id": message_id}],
                }
            await self.record({**entry, "account_id": account_id, "message_id": message_id, "at": time.time()})
            return response

        @router.get("/sandbox/messages")
        async def messages(to: Annotated[str | None, Query(max_length=256)] = None) -> dict[str, Any]:
            return {"messages": await self.sends(to)}

        return router
