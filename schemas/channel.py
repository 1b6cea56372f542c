"""channel.* topics: raw webhooks, normalized inbound messages, outbound sends, delivery receipts."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints

from schemas.envelope import Channel, Envelope, ExternalId, Frozen, MessageText, ShortText

Url = Annotated[str, StringConstraints(max_length=2048)]


class RawWebhook(Envelope):
    """A Meta webhook body whose signature was verified, exactly as received (channel.raw.v1)."""

    type: Literal["meta_webhook"] = "meta_webhook"
    channel_account_id: ExternalId
    body: Annotated[str, StringConstraints(max_length=1_048_576)]
    received_at: AwareDatetime


class TextContent(Frozen):
    kind: Literal["text"] = "text"
    text: MessageText


class MediaContent(Frozen):
    kind: Literal["image", "audio", "video", "file", "sticker"]
    media_id: ExternalId | None = None
    url: Url | None = None
    mime_type: ShortText | None = None
    caption: MessageText | None = None


class ChoiceContent(Frozen):
    """A tap on something the business offered: quick reply, postback, interactive button/list."""

    kind: Literal["quick_reply", "postback", "button_reply", "list_reply"]
    title: ShortText
    payload: Annotated[str, StringConstraints(max_length=1000)]


class ReactionContent(Frozen):
    kind: Literal["reaction"] = "reaction"
    emoji: Annotated[str, StringConstraints(max_length=32)]
    reacted_to: ExternalId


class StoryContent(Frozen):
    kind: Literal["story_reply", "story_mention"]
    story_url: Url | None = None
    text: MessageText | None = None


class LocationContent(Frozen):
    kind: Literal["location"] = "location"
    latitude: Annotated[float, Field(ge=-90, le=90)]
    longitude: Annotated[float, Field(ge=-180, le=180)]
    name: ShortText | None = None
    address: ShortText | None = None


class ContactCard(Frozen):
    name: ShortText
    phones: tuple[ShortText, ...] = ()


class ContactsContent(Frozen):
    kind: Literal["contacts"] = "contacts"
    contacts: Annotated[tuple[ContactCard, ...], Field(max_length=20)]


class UnsupportedContent(Frozen):
    """A message kind sellmesh does not understand yet; kept so a person can see it."""

    kind: Literal["unsupported"] = "unsupported"
    raw_type: ShortText


Content = Annotated[
    TextContent
    | MediaContent
    | ChoiceContent
    | ReactionContent
    | StoryContent
    | LocationContent
    | ContactsContent
    | UnsupportedContent,
    Field(discriminator="kind"),
]


class InboundMessage(Envelope):
    """One customer message, normalized across channels (channel.inbound.v1).

    `conversation_id` is derived from (tenant, channel account, customer) so every
    stage keys the same conversation the same way.
    """

    type: Literal["inbound_message"] = "inbound_message"
    conversation_id: ExternalId
    channel: Channel
    channel_account_id: ExternalId
    customer_id: ExternalId
    message_id: ExternalId
    sent_at: AwareDatetime
    content: Content


class Author(StrEnum):
    AI = "ai"
    HUMAN = "human"
    SYSTEM = "system"


class OutboundMessage(Envelope):
    """A message to send to a customer (channel.outbound.v1); the sender enforces conversation mode."""

    type: Literal["outbound_message"] = "outbound_message"
    conversation_id: ExternalId
    channel: Channel
    channel_account_id: ExternalId
    customer_id: ExternalId
    author: Author
    text: MessageText


class DeliveryState(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class DeliveryStatus(Envelope):
    """What happened to a message we sent (channel.delivery.v1)."""

    type: Literal["delivery_status"] = "delivery_status"
    conversation_id: ExternalId
    channel: Channel
    message_id: ExternalId
    state: DeliveryState
    error_code: ShortText | None = None
    error_detail: ShortText | None = None
