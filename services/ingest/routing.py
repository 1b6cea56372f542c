"""Which connected account each webhook entry is addressed to, read without trusting anything else in it."""

from collections.abc import Mapping
from typing import Any

from schemas.envelope import Channel

OBJECT_CHANNELS: Mapping[str, Channel] = {
    "whatsapp_business_account": Channel.WHATSAPP,
    "page": Channel.MESSENGER,
    "instagram": Channel.INSTAGRAM,
}


class UnroutableWebhook(ValueError):
    """The body is JSON but not a Meta webhook we can route (unknown object, no entries)."""


def channel_of(body: Mapping[str, Any]) -> Channel:
    obj = body.get("object")
    if not isinstance(obj, str) or obj not in OBJECT_CHANNELS:
        raise UnroutableWebhook(f"unknown webhook object {obj!r}")
    return OBJECT_CHANNELS[obj]


def account_ids(body: Mapping[str, Any]) -> list[str]:
    """The receiving account of every entry: WhatsApp phone_number_id, else the Page / IG account id."""
    channel = channel_of(body)
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        raise UnroutableWebhook("webhook has no entries")
    found: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise UnroutableWebhook("entry is not an object")
        if channel is Channel.WHATSAPP:
            for change in entry.get("changes") or []:
                metadata = (change.get("value") or {}).get("metadata") or {} if isinstance(change, dict) else {}
                phone_number_id = metadata.get("phone_number_id")
                if phone_number_id:
                    found.append(str(phone_number_id))
        elif entry.get("id") is not None:
            found.append(str(entry["id"]))
    if not found:
        raise UnroutableWebhook("no entry names a receiving account")
    return list(dict.fromkeys(found))
