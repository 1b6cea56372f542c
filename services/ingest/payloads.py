"""Builds Meta webhook bodies shaped as Meta sends them: for `sellmesh chat`, the tests and the benchmarks."""

import json
import time
import uuid
from typing import Any


def whatsapp_text(
    *, phone_number_id: str, customer: str, text: str, message_id: str | None = None, timestamp: int | None = None
) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba-demo",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {"display_phone_number": "15550000000", "phone_number_id": phone_number_id},
                            "contacts": [{"profile": {"name": "Customer"}, "wa_id": customer}],
                            "messages": [
                                {
                                    "from": customer,
                                    "id": message_id or f"wamid.{uuid.uuid4().hex}",
                                    "timestamp": str(timestamp or int(time.time())),
                                    "type": "text",
                                    "text": {"body": text},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }


def messenger_text(
    *, page_id: str, customer: str, text: str, mid: str | None = None, echo: bool = False, instagram: bool = False
) -> dict[str, Any]:
    sender, recipient = (page_id, customer) if echo else (customer, page_id)
    message: dict[str, Any] = {"mid": mid or f"m_{uuid.uuid4().hex}", "text": text}
    if echo:
        message["is_echo"] = True
    return {
        "object": "instagram" if instagram else "page",
        "entry": [
            {
                "id": page_id,
                "time": int(time.time() * 1000),
                "messaging": [
                    {
                        "sender": {"id": sender},
                        "recipient": {"id": recipient},
                        "timestamp": int(time.time() * 1000),
                        "message": message,
                    }
                ],
            }
        ],
    }


def encode(body: dict[str, Any]) -> bytes:
    """Meta escapes non-ASCII as \\uXXXX before signing; ensure_ascii does the same."""
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode()
