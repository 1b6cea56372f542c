"""Posts text messages to the Graph API send endpoints (WhatsApp Cloud API, Messenger/Instagram Send API)."""

from dataclasses import dataclass

import httpx

from schemas.envelope import Channel

GRAPH_VERSION = "v21.0"


class SendRejected(Exception):
    """Meta refused the message for good (4xx other than 429): retrying sends the same refusal."""


class SendUnavailable(Exception):
    """Rate limited or Meta is down: worth retrying with backoff."""


@dataclass(frozen=True)
class SendTarget:
    channel: Channel
    account_external_id: str
    access_token: str
    customer_id: str


async def send_text(client: httpx.AsyncClient, *, base_url: str, target: SendTarget, text: str) -> str:
    """Send `text`; returns the provider's message id."""
    if target.channel is Channel.WHATSAPP:
        url = f"{base_url}/{GRAPH_VERSION}/{target.account_external_id}/messages"
        body: dict[str, object] = {
            "messaging_product": "whatsapp",
            "to": target.customer_id,
            "type": "text",
            "text": {"body": text},
        }
    else:
        url = f"{base_url}/{GRAPH_VERSION}/me/messages"
        body = {"recipient": {"id": target.customer_id}, "messaging_type": "RESPONSE", "message": {"text": text}}
    try:
        response = await client.post(url, json=body, headers={"Authorization": f"Bearer {target.access_token}"})
    except httpx.HTTPError as exc:
        raise SendUnavailable(f"graph api unreachable: {type(exc).__name__}") from exc
    if response.status_code == 429 or response.status_code >= 500:
        raise SendUnavailable(f"graph api answered {response.status_code}")
    if response.status_code >= 400:
        raise SendRejected(f"graph api answered {response.status_code}: {response.text[:300]}")
    data = response.json()
    if target.channel is Channel.WHATSAPP:
        return str(data["messages"][0]["id"])
    return str(data["message_id"])
