"""`sellmesh chat`: plays a customer on WhatsApp, Messenger or Instagram through the real path."""

import time
from typing import Any

import httpx

from services.ingest.payloads import encode, messenger_text, whatsapp_text
from services.ingest.signature import sign


def demo_account(demo: dict[str, Any], channel: str) -> dict[str, str]:
    for account in demo["channel_accounts"]:
        if account["channel"] == channel:
            return dict(account)
    raise LookupError(f"the demo business has no {channel} account; run `sellmesh seed-demo` again")


def webhook_body(account: dict[str, str], text: str) -> bytes:
    if account["channel"] == "whatsapp":
        body = whatsapp_text(phone_number_id=account["external_id"], customer=account["customer"], text=text)
    else:
        body = messenger_text(
            page_id=account["external_id"],
            customer=account["customer"],
            text=text,
            instagram=account["channel"] == "instagram",
        )
    return encode(body)


def send_as_customer(
    client: httpx.Client, *, base_url: str, app_secret: str, account: dict[str, str], text: str
) -> None:
    body = webhook_body(account, text)
    response = client.post(
        f"{base_url}/webhooks/meta",
        content=body,
        headers={"content-type": "application/json", "x-hub-signature-256": sign(body, app_secret)},
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
