"""`sellmesh chat`: plays a WhatsApp customer through the real path and prints the replies."""

import time
from typing import Any

import httpx

from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import sign


def send_as_customer(client: httpx.Client, *, base_url: str, demo: dict[str, Any], text: str) -> None:
    body = encode(
        whatsapp_text(
            phone_number_id=demo["channel_accounts"][0]["phone_number_id"], customer=demo["demo_customer"], text=text
        )
    )
    response = client.post(
        f"{base_url}/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, demo["app_secret"])},
    )
    response.raise_for_status()


def replies(client: httpx.Client, *, base_url: str, customer: str) -> list[dict[str, Any]]:
    response = client.get(f"{base_url}/sandbox/messages", params={"to": customer})
    response.raise_for_status()
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def wait_for_replies(
    client: httpx.Client, *, base_url: str, customer: str, after: int, timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = replies(client, base_url=base_url, customer=customer)
        if len(seen) > after:
            time.sleep(0.3)  # a tool call may bring a second message (a payment link) right behind
            return replies(client, base_url=base_url, customer=customer)[after:]
        time.sleep(0.1)
    return []
