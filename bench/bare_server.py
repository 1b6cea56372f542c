"""Baseline servers on the same HTTP stack (FastAPI on uvicorn): a webhook that only reads the body,
and a Graph API stand-in that answers sends, so a benchmark can tell our cost from the stack's."""

import sys
import uuid
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhooks/meta")
async def webhook(request: Request) -> dict[str, str]:
    await request.body()
    return {"status": "accepted"}


@app.post("/{version}/{account_id}/messages")
async def send(version: str, account_id: str, request: Request) -> dict[str, Any]:
    body = await request.json()
    if account_id == "me":
        return {"recipient_id": body["recipient"]["id"], "message_id": f"m_{uuid.uuid4().hex}"}
    return {"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": f"wamid.{uuid.uuid4().hex}"}]}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
