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


MAX_ACCOUNTS = 50


class TooManyAccounts(ValueError):
    """More receiving accounts in one webhook than any delivery of Meta's carries."""


def channel_of(body: Mapping[str, Any]) -> Channel:
    obj = body.get("object")
    if not isinstance(obj, str) or obj not in OBJECT_CHANNELS:
        raise UnroutableWebhook(f"unknown webhook object {obj!r}")
    return OBJECT_CHANNELS[obj]


def account_ids(body: Mapping[str, Any], *, limit: int | None = MAX_ACCOUNTS) -> list[str]:
    """The receiving account of every entry: WhatsApp phone_number_id, else the Page / IG account id; more than
    `limit` distinct ones (None: no limit) raise `TooManyAccounts`."""
    channel = channel_of(body)
    entries = body.get("entry")
    if not isinstance(entries, list) or not entries:
        raise UnroutableWebhook("webhook has no entries")
    found: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise UnroutableWebhook("entry is not an object")
        if channel is Channel.WHATSAPP:
            changes = entry.get("changes") or []
            if not isinstance(changes, list):
                raise UnroutableWebhook("changes is not a list")
            for change in changes:
                value = change.get("value") if isinstance(change, dict) else None
                metadata = value.get("metadata") if isinstance(value, dict) else None
                phone_number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
                if phone_number_id and isinstance(phone_number_id, str | int):
                    found.append(str(phone_number_id))
        elif isinstance(entry.get("id"), str | int):
            found.append(str(entry["id"]))
    if not found:
        raise UnroutableWebhook("no entry names a receiving account")
    accounts = list(dict.fromkeys(found))
    if limit is not None and len(accounts) > limit:
        # Each is a lookup before any account's signature is checked: a body no secret has verified yet that names
        # thousands would cost the database for nothing.
        raise TooManyAccounts(f"webhook names {len(accounts)} receiving accounts; at most {limit}")
    return accounts
