"""Messenger and Instagram `messaging[]` events turned into channel-neutral messages and statuses."""

from datetime import UTC, datetime
from typing import Any

from schemas.channel import (
    ChoiceContent,
    DeliveryState,
    MediaContent,
    ReactionContent,
    StoryContent,
    TextContent,
    UnsupportedContent,
)
from schemas.envelope import Channel
from services.ingest.normalize import TEXT_LIMIT, ParsedMessage, ParsedStatus, parse_webhook
from services.ingest.payloads import messenger_text

PAGE = "111111111111111"
PSID = "2222222222222222"
IG_ACCOUNT = "17841400000000001"
IGSID = "6800000000000001"
TS_MS = 1785000000001
AT = datetime.fromtimestamp(TS_MS / 1000, UTC)


def _body(*events: dict[str, Any], obj: str = "page", account: str = PAGE) -> dict[str, Any]:
    return {"object": obj, "entry": [{"id": account, "time": TS_MS + 100, "messaging": list(events)}]}


def _event(*, sender: str = PSID, recipient: str = PAGE, **kind: Any) -> dict[str, Any]:
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": TS_MS, **kind}


def _only(body: dict[str, Any]) -> ParsedMessage:
    [item] = parse_webhook(body)
    assert isinstance(item, ParsedMessage)
    return item


def test_messenger_text_uses_the_page_as_account_and_milliseconds_timestamp() -> None:
    item = _only(_body(_event(message={"mid": "m_synthetic01", "text": "hola"})))
    assert item == ParsedMessage(
        channel=Channel.MESSENGER,
        account_external_id=PAGE,
        customer_id=PSID,
        message_id="m_synthetic01",
        sent_at=AT,
        content=TextContent(text="hola"),
    )
    assert item.sent_at.year == 2026


def test_oversized_messenger_text_is_clipped() -> None:
    item = _only(_body(_event(message={"mid": "m1", "text": "y" * (TEXT_LIMIT + 1)})))
    assert item.content == TextContent(text="y" * TEXT_LIMIT)


def test_a_nul_in_a_customers_text_is_dropped_so_the_message_can_be_kept_and_answered() -> None:
    item = _only(_body(_event(message={"mid": "m_nul", "text": "two\x00 mugs"})))
    assert item.content == TextContent(text="two mugs")


def test_an_echo_is_flagged_and_belongs_to_the_customer_it_was_sent_to() -> None:
    event = _event(sender=PAGE, recipient=PSID, message={"mid": "m_echo", "text": "hi!", "is_echo": True, "app_id": 1})
    item = _only(_body(event))
    assert item.is_echo
    assert item.customer_id == PSID


def test_the_payloads_helper_echo_parses_as_an_echo() -> None:
    item = _only(messenger_text(page_id=PAGE, customer=PSID, text="thanks", mid="m_e", echo=True))
    assert (item.is_echo, item.customer_id, item.account_external_id) == (True, PSID, PAGE)


def test_quick_reply_is_a_choice_titled_with_the_text() -> None:
    message = {"mid": "m2", "text": "Size M", "quick_reply": {"payload": "SIZE_M"}}
    item = _only(_body(_event(message=message)))
    assert item.content == ChoiceContent(kind="quick_reply", title="Size M", payload="SIZE_M")


def test_postback_is_a_choice_with_its_own_mid() -> None:
    item = _only(_body(_event(postback={"title": "Buy now", "payload": "BUY_SKU1", "mid": "m_pb"})))
    assert item.message_id == "m_pb"
    assert item.content == ChoiceContent(kind="postback", title="Buy now", payload="BUY_SKU1")


def test_postback_without_mid_gets_a_stable_synthetic_id() -> None:
    body = _body(_event(postback={"title": "Start", "payload": "GET_STARTED"}))
    first, second = _only(body), _only(body)
    assert first.message_id == second.message_id == f"postback:{PSID}:{TS_MS}"


def test_image_attachment_keeps_its_url() -> None:
    attachment = {"type": "image", "payload": {"url": "https://cdn.example/img.jpg"}}
    item = _only(_body(_event(message={"mid": "m3", "attachments": [attachment]})))
    assert item.content == MediaContent(kind="image", url="https://cdn.example/img.jpg")


def test_an_unhandled_attachment_type_is_unsupported() -> None:
    attachment = {"type": "template", "payload": {"template_type": "generic"}}
    item = _only(_body(_event(message={"mid": "m4", "attachments": [attachment]})))
    assert item.content == UnsupportedContent(raw_type="template")


def test_words_beside_a_link_preview_are_the_message() -> None:
    # A shared URL comes as the text plus a `fallback` attachment previewing the link.
    text = "Do you have this in M? https://shop.example/p/42"
    attachment = {"type": "fallback", "payload": {"url": "https://shop.example/p/42", "title": "Shirt"}}
    item = _only(_body(_event(message={"mid": "m6", "text": text, "attachments": [attachment]})))
    assert item.content == TextContent(text=text)


def test_words_beside_a_photo_are_its_caption() -> None:
    attachment = {"type": "image", "payload": {"url": "https://cdn.example/img.jpg"}}
    item = _only(_body(_event(message={"mid": "m7", "text": "this one, in blue?", "attachments": [attachment]})))
    assert item.content == MediaContent(kind="image", url="https://cdn.example/img.jpg", caption="this one, in blue?")


def test_reaction_gets_a_synthetic_id_naming_the_reacted_message() -> None:
    item = _only(_body(_event(reaction={"mid": "m_out", "action": "react", "reaction": "love", "emoji": "\u2764"})))
    assert item.content == ReactionContent(emoji="\u2764", reacted_to="m_out")
    assert item.message_id == f"reaction:m_out:react:{TS_MS}"


def test_read_watermark_becomes_a_read_status_with_a_synthetic_id() -> None:
    [item] = parse_webhook(_body(_event(read={"watermark": TS_MS - 5})))
    assert item == ParsedStatus(Channel.MESSENGER, PAGE, PSID, f"read:{PSID}:{TS_MS}", DeliveryState.READ, AT)


def test_delivery_yields_one_delivered_status_per_mid() -> None:
    items = parse_webhook(_body(_event(delivery={"mids": ["m_a", "m_b"], "watermark": TS_MS})))
    assert [(i.message_id, i.state) for i in items if isinstance(i, ParsedStatus)] == [
        ("m_a", DeliveryState.DELIVERED),
        ("m_b", DeliveryState.DELIVERED),
    ]


def test_events_of_unknown_kinds_are_skipped() -> None:
    assert parse_webhook(_body(_event(optin={"ref": "x"}), _event(referral={"ref": "ad"}))) == []


def test_every_event_of_every_entry_is_processed() -> None:
    body = _body(_event(message={"mid": "m1", "text": "a"}), _event(message={"mid": "m2", "text": "b"}))
    body["entry"].append(_body(_event(message={"mid": "m3", "text": "c"}), account="999")["entry"][0])
    items = parse_webhook(body)
    assert [(i.account_external_id, i.message_id) for i in items] == [(PAGE, "m1"), (PAGE, "m2"), ("999", "m3")]


def test_instagram_text_is_an_instagram_message_for_the_professional_account() -> None:
    body = _body(
        _event(sender=IGSID, recipient=IG_ACCOUNT, message={"mid": "aWdfZG1f", "text": "thanks!"}),
        obj="instagram",
        account=IG_ACCOUNT,
    )
    item = _only(body)
    assert (item.channel, item.account_external_id, item.customer_id) == (Channel.INSTAGRAM, IG_ACCOUNT, IGSID)
    assert item.content == TextContent(text="thanks!")


def test_the_payloads_helper_instagram_body_parses_as_instagram() -> None:
    item = _only(messenger_text(page_id=IG_ACCOUNT, customer=IGSID, text="hey", instagram=True))
    assert item.channel is Channel.INSTAGRAM and item.customer_id == IGSID


def test_instagram_story_mention_keeps_the_story_url() -> None:
    attachment = {"type": "story_mention", "payload": {"url": "https://lookaside.example/story"}}
    event = _event(sender=IGSID, recipient=IG_ACCOUNT, message={"mid": "m5", "attachments": [attachment]})
    item = _only(_body(event, obj="instagram", account=IG_ACCOUNT))
    assert item.content == StoryContent(kind="story_mention", story_url="https://lookaside.example/story")


def test_instagram_story_reply_keeps_the_story_url_and_the_text() -> None:
    message = {"mid": "m6", "text": "love it", "reply_to": {"story": {"url": "https://cdn.example/s", "id": "st1"}}}
    item = _only(
        _body(_event(sender=IGSID, recipient=IG_ACCOUNT, message=message), obj="instagram", account=IG_ACCOUNT)
    )
    assert item.content == StoryContent(kind="story_reply", story_url="https://cdn.example/s", text="love it")


def test_instagram_read_of_one_message_uses_that_mid() -> None:
    [item] = parse_webhook(
        _body(_event(sender=IGSID, recipient=IG_ACCOUNT, read={"mid": "m_out"}), obj="instagram", account=IG_ACCOUNT)
    )
    assert isinstance(item, ParsedStatus)
    assert (item.channel, item.message_id, item.state) == (Channel.INSTAGRAM, "m_out", DeliveryState.READ)


def test_an_instagram_unsend_without_content_is_unsupported_not_a_crash() -> None:
    item = _only(
        _body(_event(sender=IGSID, recipient=IG_ACCOUNT, message={"mid": "m7", "is_deleted": True}), obj="instagram")
    )
    assert item.content == UnsupportedContent(raw_type="message")


def test_an_echo_carries_the_send_id_our_request_put_in_its_metadata() -> None:
    event = _event(
        sender=PAGE, recipient=PSID, message={"mid": "m_e2", "text": "hi", "is_echo": True, "metadata": "abc"}
    )
    assert _only(_body(event)).send_id == "abc"


def test_metadata_on_a_customers_message_is_not_taken_for_a_send_id() -> None:
    event = _event(message={"mid": "m_c", "text": "hi", "metadata": "abc"})
    assert _only(_body(event)).send_id is None
