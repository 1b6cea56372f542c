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
    client: httpx.Client, *, base_url: str, customer: str, after: int, timeout: float, quiet: float = 2.0
) -> list[dict[str, Any]]:
    """Replies past the first `after`, once none has arrived for `quiet` seconds (a payment link follows later)."""
    deadline = time.monotonic() + timeout
    seen = after
    last_change = time.monotonic()
    while time.monotonic() < deadline:
        count = len(replies(client, base_url=base_url, customer=customer))
        if count != seen:
            seen, last_change = count, time.monotonic()
        elif seen > after and time.monotonic() - last_change >= quiet:
            break
        time.sleep(0.1)
    return replies(client, base_url=base_url, customer=customer)[after:]
