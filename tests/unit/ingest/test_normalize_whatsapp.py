"""WhatsApp Cloud API webhooks turned into channel-neutral messages and delivery statuses."""

from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.channel import (
    ChoiceContent,
    ContactCard,
    ContactsContent,
    DeliveryState,
    LocationContent,
    MediaContent,
    ReactionContent,
    TextContent,
    UnsupportedContent,
)
from schemas.envelope import Channel
from services.ingest.normalize import TEXT_LIMIT, ParsedMessage, ParsedStatus, parse_webhook
from services.ingest.payloads import whatsapp_text

PHONE_ID = "106540352242922"
CUSTOMER = "5215550002222"
TS = 1785000000
AT = datetime.fromtimestamp(TS, UTC)


def _value(
    *, messages: list[dict[str, Any]] | None = None, statuses: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": PHONE_ID},
    }
    if messages is not None:
        value["contacts"] = [{"profile": {"name": "Ana"}, "wa_id": CUSTOMER}]
        value["messages"] = messages
    if statuses is not None:
        value["statuses"] = statuses
    return value


def _body(*values: dict[str, Any], field: str = "messages") -> dict[str, Any]:
    changes = [{"field": field, "value": value} for value in values]
    return {"object": "whatsapp_business_account", "entry": [{"id": "waba-1", "changes": changes}]}


def _message(kind: str, payload: Any, *, wamid: str = "wamid.SYNTH1") -> dict[str, Any]:
    return {"from": CUSTOMER, "id": wamid, "timestamp": str(TS), "type": kind, kind: payload}


def _only_message(kind: str, payload: Any) -> ParsedMessage:
    [item] = parse_webhook(_body(_value(messages=[_message(kind, payload)])))
    assert isinstance(item, ParsedMessage)
    return item


def _status(state: str, **extra: Any) -> dict[str, Any]:
    return {"id": "wamid.OUT1", "status": state, "timestamp": str(TS + 100), "recipient_id": CUSTOMER, **extra}


def test_text_message_keeps_sender_ids_and_the_seconds_timestamp() -> None:
    item = _only_message("text", {"body": "\u00bftienen talla M?"})
    assert item == ParsedMessage(
        channel=Channel.WHATSAPP,
        account_external_id=PHONE_ID,
        customer_id=CUSTOMER,
        message_id="wamid.SYNTH1",
        sent_at=AT,
        content=TextContent(text="\u00bftienen talla M?"),
    )
    assert item.sent_at.tzinfo is UTC
    assert not item.is_echo


def test_the_payloads_helper_body_parses_to_one_text_message() -> None:
    body = whatsapp_text(phone_number_id=PHONE_ID, customer=CUSTOMER, text="hi", message_id="wamid.X", timestamp=TS)
    [item] = parse_webhook(body)
    assert isinstance(item, ParsedMessage)
    assert (item.account_external_id, item.message_id, item.sent_at, item.content) == (
        PHONE_ID,
        "wamid.X",
        AT,
        TextContent(text="hi"),
    )


def test_oversized_text_is_clipped_to_the_limit() -> None:
    item = _only_message("text", {"body": "x" * (TEXT_LIMIT + 50)})
    assert item.content == TextContent(text="x" * 4096)


def test_image_keeps_media_id_mime_type_and_caption() -> None:
    item = _only_message("image", {"id": "media-1", "mime_type": "image/jpeg", "sha256": "abc", "caption": "this one?"})
    assert item.content == MediaContent(kind="image", media_id="media-1", mime_type="image/jpeg", caption="this one?")


def test_image_without_caption_has_none() -> None:
    item = _only_message("image", {"id": "media-1", "mime_type": "image/jpeg"})
    assert isinstance(item.content, MediaContent) and item.content.caption is None


def test_document_becomes_a_file() -> None:
    item = _only_message("document", {"id": "media-2", "mime_type": "application/pdf", "filename": "list.pdf"})
    assert item.content == MediaContent(kind="file", media_id="media-2", mime_type="application/pdf")


@pytest.mark.parametrize("kind", ["audio", "video", "sticker"])
def test_other_media_keep_their_kind(kind: str) -> None:
    item = _only_message(kind, {"id": "media-3", "mime_type": "x/y"})
    assert item.content == MediaContent(kind=kind, media_id="media-3", mime_type="x/y")  # type: ignore[arg-type]


@pytest.mark.parametrize("reply_kind", ["button_reply", "list_reply"])
def test_interactive_reply_becomes_a_choice_with_title_and_id(reply_kind: str) -> None:
    reply = {"id": "size_m", "title": "Size M", "description": "Medium"}
    item = _only_message("interactive", {"type": reply_kind, reply_kind: reply})
    assert item.content == ChoiceContent(kind=reply_kind, title="Size M", payload="size_m")  # type: ignore[arg-type]


def test_an_unknown_interactive_reply_is_unsupported() -> None:
    item = _only_message("interactive", {"type": "nfm_reply", "nfm_reply": {"response_json": "{}"}})
    assert item.content == UnsupportedContent(raw_type="interactive")


def test_template_button_becomes_a_quick_reply() -> None:
    item = _only_message("button", {"payload": "YES_PLEASE", "text": "Yes please"})
    assert item.content == ChoiceContent(kind="quick_reply", title="Yes please", payload="YES_PLEASE")


def test_reaction_names_the_reacted_to_message() -> None:
    item = _only_message("reaction", {"message_id": "wamid.OUT1", "emoji": "\U0001f44d"})
    assert item.content == ReactionContent(emoji="\U0001f44d", reacted_to="wamid.OUT1")


def test_location_keeps_coordinates_name_and_address() -> None:
    loc = {"latitude": 19.4326, "longitude": -99.1332, "name": "Shop", "address": "Av. Reforma 1"}
    item = _only_message("location", loc)
    assert item.content == LocationContent(latitude=19.4326, longitude=-99.1332, name="Shop", address="Av. Reforma 1")


def test_contacts_keep_formatted_names_and_phones() -> None:
    contacts = [
        {
            "name": {"formatted_name": "Luis P", "first_name": "Luis"},
            "phones": [{"phone": "+52 1 555", "type": "CELL"}],
        },
        {"name": {"formatted_name": "No Phone"}},
    ]
    item = _only_message("contacts", contacts)
    expected = (ContactCard(name="Luis P", phones=("+52 1 555",)), ContactCard(name="No Phone"))
    assert item.content == ContactsContent(contacts=expected)


def test_more_than_twenty_contacts_are_cut_to_twenty() -> None:
    item = _only_message("contacts", [{"name": {"formatted_name": f"c{i}"}} for i in range(25)])
    assert isinstance(item.content, ContactsContent) and len(item.content.contacts) == 20


def test_an_unknown_type_is_kept_as_unsupported_with_its_raw_type() -> None:
    item = _only_message("order", {"catalog_id": "1", "product_items": []})
    assert item.content == UnsupportedContent(raw_type="order")


@pytest.mark.parametrize("state", list(DeliveryState))
def test_statuses_become_delivery_states_for_our_outbound_message(state: DeliveryState) -> None:
    [item] = parse_webhook(_body(_value(statuses=[_status(state.value)])))
    assert item == ParsedStatus(
        channel=Channel.WHATSAPP,
        account_external_id=PHONE_ID,
        customer_id=CUSTOMER,
        message_id="wamid.OUT1",
        state=state,
        at=datetime.fromtimestamp(TS + 100, UTC),
    )


def test_a_failed_status_carries_the_first_error_code() -> None:
    errors = [{"code": 131047, "title": "Re-engagement message", "error_data": {"details": "24 hours"}}]
    [item] = parse_webhook(_body(_value(statuses=[_status("failed", errors=errors)])))
    assert isinstance(item, ParsedStatus)
    assert (item.state, item.error_code) == (DeliveryState.FAILED, "131047")


def test_a_status_only_value_yields_no_messages_even_with_contacts_lacking_profile() -> None:
    value = _value(statuses=[_status("delivered", conversation={"id": "c1", "origin": {"type": "service"}})])
    value["contacts"] = [{"wa_id": CUSTOMER}]
    items = parse_webhook(_body(value))
    assert [type(item) for item in items] == [ParsedStatus]


def test_changes_for_other_fields_are_ignored() -> None:
    body = _body(_value(messages=[_message("text", {"body": "hi"})]), field="message_template_status_update")
    assert parse_webhook(body) == []


def test_a_value_with_neither_messages_nor_statuses_yields_nothing() -> None:
    assert parse_webhook(_body(_value())) == []


def test_every_message_status_change_and_entry_of_a_batch_is_processed() -> None:
    first = _value(messages=[_message("text", {"body": "a"}, wamid="w1"), _message("text", {"body": "b"}, wamid="w2")])
    second = _value(statuses=[_status("read")])
    body = _body(first, second)
    body["entry"].append(_body(_value(messages=[_message("text", {"body": "c"}, wamid="w3")]))["entry"][0])
    items = parse_webhook(body)
    assert [item.message_id for item in items] == ["w1", "w2", "wamid.OUT1", "w3"]


def test_a_status_carries_the_tag_our_send_put_on_it() -> None:
    [item] = parse_webhook(_body(_value(statuses=[_status("failed", biz_opaque_callback_data="send-1")])))
    assert isinstance(item, ParsedStatus) and item.send_tag == "send-1"
    [untagged] = parse_webhook(_body(_value(statuses=[_status("delivered")])))
    assert isinstance(untagged, ParsedStatus) and untagged.send_tag is None
