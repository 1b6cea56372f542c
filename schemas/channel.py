"""channel.* topics: raw webhooks, normalized inbound messages, outbound sends, delivery receipts."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from schemas.envelope import Channel, Envelope, ExternalId, Frozen, MessageText, ShortText

Url = Annotated[str, StringConstraints(max_length=2048)]


class RawWebhook(Envelope):
    """A Meta webhook body whose signature was verified, exactly as received (channel.raw.v1).

    A body may name several accounts; only the items of accounts that signed it may be taken. With
    `platform_signed`, the platform app's secret verified it (Meta signed every entry); otherwise the accounts
    in `signed_by` did, each with its own app secret. A record from before `signed_by` names only
    `channel_account_id`."""

    type: Literal["meta_webhook"] = "meta_webhook"
    channel_account_id: ExternalId
    body: Annotated[str, StringConstraints(max_length=1_048_576)]
    received_at: AwareDatetime
    platform_signed: bool = False
    signed_by: Annotated[tuple[ExternalId, ...], Field(max_length=50)] = ()

    def signed_for(self, account_id: str) -> bool:
        """Whether the items addressed to our channel account `account_id` are verified."""
        return self.platform_signed or account_id in (self.signed_by or [self.channel_account_id])


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


class QuickReply(Frozen):
    """A button the customer can tap instead of typing; its payload comes back as a ChoiceContent."""

    title: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    payload: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


TemplateParameter = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class WhatsAppTemplate(Frozen):
    """An approved WhatsApp template: the only message WhatsApp delivers outside the 24-hour window."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    language: Annotated[str, StringConstraints(min_length=2, max_length=16)]  # e.g. "en_US"
    body_parameters: Annotated[tuple[TemplateParameter, ...], Field(max_length=100)] = ()


# Messenger and Instagram take up to 13 quick replies; WhatsApp reply buttons are at most 3, with
# an id of at most 256 characters and a body of at most 1024 (Meta's interactive-message limits).
MAX_QUICK_REPLIES = 13
MAX_WHATSAPP_BUTTONS = 3
MAX_WHATSAPP_BUTTON_ID = 256
MAX_WHATSAPP_BUTTON_BODY = 1024


class OutboundMessage(Envelope):
    """A message to send to a customer (channel.outbound.v1); the sender enforces conversation mode.

    `text` is always the readable message. With `image_url`, WhatsApp sends the image with
    `text` as its caption; Messenger and Instagram send the image, then `text` as a second
    message. With `template` (WhatsApp only), the template is sent and `text` is only what
    the message log keeps.
    """

    type: Literal["outbound_message"] = "outbound_message"
    conversation_id: ExternalId
    channel: Channel
    channel_account_id: ExternalId
    customer_id: ExternalId
    author: Author
    text: MessageText
    quick_replies: Annotated[tuple[QuickReply, ...], Field(max_length=MAX_QUICK_REPLIES)] = ()
    image_url: Url | None = None
    template: WhatsAppTemplate | None = None

    @model_validator(mode="after")
    def _fits_the_channel(self) -> "OutboundMessage":
        if self.quick_replies and not self.text:
            raise ValueError("quick replies need a non-empty text")
        if self.template is not None:
            if self.channel is not Channel.WHATSAPP:
                raise ValueError("templates exist only on WhatsApp")
            if self.quick_replies or self.image_url:
                raise ValueError("a template message carries neither quick replies nor an image")
        if self.channel is Channel.WHATSAPP and self.quick_replies:
            if len(self.quick_replies) > MAX_WHATSAPP_BUTTONS:
                raise ValueError(f"WhatsApp takes at most {MAX_WHATSAPP_BUTTONS} reply buttons")
            if any(len(reply.payload) > MAX_WHATSAPP_BUTTON_ID for reply in self.quick_replies):
                raise ValueError(f"a WhatsApp button payload is at most {MAX_WHATSAPP_BUTTON_ID} characters")
            if len(self.text) > MAX_WHATSAPP_BUTTON_BODY:
                raise ValueError(f"a WhatsApp message with buttons has at most {MAX_WHATSAPP_BUTTON_BODY} characters")
        return self


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


def content_text(content: Content) -> str:
    """The words a content carries (text, caption or tapped title); empty for media, location and the like."""
    for attr in ("text", "caption", "title"):
        value = getattr(content, attr, None)
        if isinstance(value, str) and value:
            return value
    return ""
