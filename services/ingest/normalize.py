"""Turns one Meta webhook body into channel-neutral messages and delivery statuses (pure)."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.channel import (
    ChoiceContent,
    ContactCard,
    ContactsContent,
    Content,
    DeliveryState,
    LocationContent,
    MediaContent,
    ReactionContent,
    StoryContent,
    TextContent,
    UnsupportedContent,
)
from schemas.envelope import Channel
from services.ingest.routing import channel_of

TEXT_LIMIT = 4096


@dataclass(frozen=True)
class ParsedMessage:
    channel: Channel
    account_external_id: str
    customer_id: str
    message_id: str
    sent_at: datetime
    content: Content
    # True for the business's own messages echoed back: never shown to the AI.
    is_echo: bool = False
    # On an echo of our own send: the `metadata` it carried, the id of its `ingest_sends` row.
    send_id: str | None = None


@dataclass(frozen=True)
class ParsedStatus:
    channel: Channel
    account_external_id: str
    customer_id: str
    message_id: str
    state: DeliveryState
    at: datetime
    error_code: str | None = None
    # What our send carried to name itself (WhatsApp hands `biz_opaque_callback_data` back on its statuses).
    send_tag: str | None = None


@dataclass(frozen=True)
class Unparsed:
    """One item of a verified body that could not be read; kept (DLQ) rather than crash the batch."""

    channel: Channel
    account_external_id: str
    reason: str


Parsed = ParsedMessage | ParsedStatus | Unparsed
ITEM_ERRORS = (KeyError, ValueError, TypeError, AttributeError, IndexError, OverflowError)


def _seconds(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value), UTC)


def _millis(value: Any) -> datetime:
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def _clip(text: Any) -> str:
    # A NUL is nothing a customer meant to write, and no database column can keep it: dropped, not refused.
    return str(text or "").replace("\x00", "")[:TEXT_LIMIT]


def parse_webhook(body: Mapping[str, Any]) -> list[Parsed]:
    """Every item of every entry; an item that cannot be read becomes `Unparsed`, the rest go on."""
    channel = channel_of(body)
    items: list[Parsed] = []
    for entry in body.get("entry") or []:
        if not isinstance(entry, Mapping):
            items.append(Unparsed(channel, "", "entry is not an object"))
            continue
        parsed = _whatsapp_entry(entry) if channel is Channel.WHATSAPP else _messaging_entry(channel, entry)
        try:
            items.extend(parsed)
        except ITEM_ERRORS as exc:
            # A shape no guard below foresaw: what the entry yielded so far stands, the rest is kept as one item.
            items.append(Unparsed(channel, str(entry.get("id", "")), f"entry: {type(exc).__name__}: {exc}"[:300]))
    return items


def _whatsapp_customer(message: Mapping[str, Any]) -> str:
    # Since 2026 a business-scoped user id may stand in for the phone number.
    customer = message.get("from") or message.get("user_id")
    if not customer:
        raise KeyError("message has neither from nor user_id")
    return str(customer)


def _whatsapp_entry(entry: Mapping[str, Any]) -> Iterator[Parsed]:
    for change in entry.get("changes") or []:
        if not isinstance(change, Mapping) or not isinstance(change.get("value") or {}, Mapping):
            yield Unparsed(Channel.WHATSAPP, "", "change is not an object with an object value")
            continue
        if change.get("field") != "messages":
            continue  # template status, account updates...: accepted and ignored
        value = change.get("value") or {}
        metadata = value.get("metadata")
        account = str((metadata if isinstance(metadata, Mapping) else {}).get("phone_number_id", ""))
        for message in value.get("messages") or []:
            try:
                yield ParsedMessage(
                    channel=Channel.WHATSAPP,
                    account_external_id=account,
                    customer_id=_whatsapp_customer(message),
                    message_id=str(message["id"]),
                    sent_at=_seconds(message.get("timestamp", 0)),
                    content=_whatsapp_content(message),
                )
            except ITEM_ERRORS as exc:
                yield Unparsed(Channel.WHATSAPP, account, f"message: {type(exc).__name__}: {exc}"[:300])
        for status in value.get("statuses") or []:
            try:
                errors = status.get("errors") or []
                yield ParsedStatus(
                    channel=Channel.WHATSAPP,
                    account_external_id=account,
                    customer_id=str(status.get("recipient_id", "")),
                    message_id=str(status["id"]),
                    state=DeliveryState(status["status"]),
                    at=_seconds(status.get("timestamp", 0)),
                    error_code=str(errors[0].get("code")) if errors else None,
                    send_tag=_tag(status.get("biz_opaque_callback_data")),
                )
            except ITEM_ERRORS as exc:
                yield Unparsed(Channel.WHATSAPP, account, f"status: {type(exc).__name__}: {exc}"[:300])


def _tag(value: Any) -> str | None:
    return value[:256] if isinstance(value, str) and value else None


def _whatsapp_content(message: Mapping[str, Any]) -> Content:
    kind = message.get("type")
    if kind == "text":
        return TextContent(text=_clip((message.get("text") or {}).get("body")))
    if kind in ("image", "audio", "video", "document", "sticker"):
        media = message.get(kind) or {}
        return MediaContent(
            kind="file" if kind == "document" else kind,
            media_id=media.get("id"),
            mime_type=media.get("mime_type"),
            caption=_clip(media["caption"]) if media.get("caption") else None,
        )
    if kind == "interactive":
        interactive = message.get("interactive") or {}
        reply_kind = interactive.get("type")
        if reply_kind in ("button_reply", "list_reply"):
            reply = interactive.get(reply_kind) or {}
            return ChoiceContent(kind=reply_kind, title=str(reply.get("title", "")), payload=str(reply.get("id", "")))
    if kind == "button":
        button = message.get("button") or {}
        return ChoiceContent(
            kind="quick_reply", title=str(button.get("text", "")), payload=str(button.get("payload", ""))
        )
    if kind == "reaction":
        reaction = message.get("reaction") or {}
        return ReactionContent(emoji=str(reaction.get("emoji", "")), reacted_to=str(reaction.get("message_id", "")))
    if kind == "location":
        loc = message.get("location") or {}
        return LocationContent(
            latitude=float(loc["latitude"]),
            longitude=float(loc["longitude"]),
            name=loc.get("name"),
            address=loc.get("address"),
        )
    if kind == "contacts":
        cards = [
            ContactCard(
                name=str((c.get("name") or {}).get("formatted_name", "")),
                phones=tuple(str(p.get("phone", "")) for p in c.get("phones") or []),
            )
            for c in (message.get("contacts") or [])[:20]
        ]
        return ContactsContent(contacts=tuple(cards))
    return UnsupportedContent(raw_type=str(kind or "unknown")[:100])


def _messaging_entry(channel: Channel, entry: Mapping[str, Any]) -> Iterator[Parsed]:
    account = str(entry.get("id", ""))
    for event in entry.get("messaging") or []:
        try:
            yield from _messaging_event(channel, account, event)
        except ITEM_ERRORS as exc:
            yield Unparsed(channel, account, f"event: {type(exc).__name__}: {exc}"[:300])


def _messaging_event(channel: Channel, account: str, event: Mapping[str, Any]) -> Iterator[Parsed]:
    sender = str((event.get("sender") or {}).get("id", ""))
    recipient = str((event.get("recipient") or {}).get("id", ""))
    at = _millis(event.get("timestamp", 0))
    message = event.get("message")
    if isinstance(message, dict):
        echo = bool(message.get("is_echo"))
        yield ParsedMessage(
            channel=channel,
            account_external_id=account,
            # On an echo the business is the sender; the conversation is still the customer's.
            customer_id=recipient if echo else sender,
            message_id=str(message["mid"]),
            sent_at=at,
            content=_messaging_content(message),
            is_echo=echo,
            send_id=str(message["metadata"])[:64] if echo and message.get("metadata") else None,
        )
    elif isinstance(event.get("postback"), dict):
        postback = event["postback"]
        mid = str(postback.get("mid") or f"postback:{sender}:{event.get('timestamp')}")
        content: Content = ChoiceContent(
            kind="postback", title=str(postback.get("title", "")), payload=str(postback.get("payload", ""))
        )
        yield ParsedMessage(channel, account, sender, mid, at, content)
    elif isinstance(event.get("reaction"), dict):
        reaction = event["reaction"]
        mid = f"reaction:{reaction.get('mid')}:{reaction.get('action', 'react')}:{event.get('timestamp')}"
        content = ReactionContent(emoji=str(reaction.get("emoji", "")), reacted_to=str(reaction.get("mid", "")))
        yield ParsedMessage(channel, account, sender, mid, at, content)
    elif isinstance(event.get("read"), dict):
        mid = str(event["read"].get("mid") or f"read:{sender}:{event.get('timestamp')}")
        yield ParsedStatus(channel, account, sender, mid, DeliveryState.READ, at)
    elif isinstance(event.get("delivery"), dict):
        for mid in event["delivery"].get("mids") or []:
            yield ParsedStatus(channel, account, sender, str(mid), DeliveryState.DELIVERED, at)


def _messaging_content(message: Mapping[str, Any]) -> Content:
    if isinstance(message.get("quick_reply"), dict):
        return ChoiceContent(
            kind="quick_reply",
            title=_clip(message.get("text"))[:500],
            payload=str(message["quick_reply"].get("payload", "")),
        )
    reply_to = message.get("reply_to") or {}
    if isinstance(reply_to.get("story"), dict):
        return StoryContent(
            kind="story_reply", story_url=reply_to["story"].get("url"), text=_clip(message.get("text")) or None
        )
    attachments = message.get("attachments") or []
    # The customer's words beside an attachment (a caption, or a link Meta previews as a `fallback` attachment)
    # are what the AI must answer: never dropped for the attachment.
    words = _clip(message.get("text")) if isinstance(message.get("text"), str) else ""
    if attachments:
        first = attachments[0] if isinstance(attachments[0], dict) else {}
        kind = first.get("type")
        payload = first.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        if kind == "story_mention":
            return StoryContent(kind="story_mention", story_url=payload.get("url"))
        if kind in ("image", "audio", "video", "file"):
            return MediaContent(kind=kind, url=payload.get("url"), caption=words or None)
        if words:
            return TextContent(text=words)
        return UnsupportedContent(raw_type=str(kind or "attachment")[:100])
    if "text" in message:
        return TextContent(text=_clip(message.get("text")))
    return UnsupportedContent(raw_type="message")
