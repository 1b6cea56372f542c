"""Send API request bodies per channel and kind, and how Graph errors are sorted."""

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.channel import Author, OutboundMessage, QuickReply, WhatsAppTemplate
from schemas.envelope import Channel
from sellmesh.sandbox.graph import messaging_entry, whatsapp_entry
from services.ingest.graph_client import RejectKind, SendRejected, SendTarget, SendUnavailable, classify, send_url
from services.ingest.graph_request import build_requests
from tests.builders import envelope

YES_NO = (QuickReply(title="Yes", payload="ANSWER_YES"), QuickReply(title="No", payload="ANSWER_NO"))
PICTURE = "https://cdn.example.com/mug.jpg"


def outbound(channel: Channel, text: str = "Hello!", **fields: Any) -> OutboundMessage:
    return OutboundMessage(
        **envelope(uuid.uuid4()),
        conversation_id="conv-1",
        channel=channel,
        channel_account_id=str(uuid.uuid4()),
        customer_id="5215550002222" if channel is Channel.WHATSAPP else "2222222222222222",
        author=Author.AI,
        text=text,
        **fields,
    )


WA_HEAD = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": "5215550002222"}


def test_whatsapp_text_is_a_text_message_without_link_preview() -> None:
    [request] = build_requests(outbound(Channel.WHATSAPP))
    assert request.kind == "text"
    assert request.body == {**WA_HEAD, "type": "text", "text": {"preview_url": False, "body": "Hello!"}}


def test_whatsapp_quick_replies_become_interactive_reply_buttons() -> None:
    [request] = build_requests(outbound(Channel.WHATSAPP, "Add it?", quick_replies=YES_NO))
    assert request.kind == "interactive"
    assert request.body == {
        **WA_HEAD,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Add it?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "ANSWER_YES", "title": "Yes"}},
                    {"type": "reply", "reply": {"id": "ANSWER_NO", "title": "No"}},
                ]
            },
        },
    }


def test_whatsapp_buttons_with_an_image_carry_it_as_the_header() -> None:
    [request] = build_requests(outbound(Channel.WHATSAPP, "This one?", quick_replies=YES_NO, image_url=PICTURE))
    interactive = request.body["interactive"]
    assert isinstance(interactive, dict)
    assert interactive["header"] == {"type": "image", "image": {"link": PICTURE}}


def test_whatsapp_image_takes_the_text_as_its_caption() -> None:
    [request] = build_requests(outbound(Channel.WHATSAPP, "Our mug", image_url=PICTURE))
    assert (request.kind, request.body["type"]) == ("image", "image")
    assert request.body["image"] == {"link": PICTURE, "caption": "Our mug"}
    [bare] = build_requests(outbound(Channel.WHATSAPP, "", image_url=PICTURE))
    assert bare.body["image"] == {"link": PICTURE}


def test_whatsapp_template_names_its_language_and_body_parameters() -> None:
    template = WhatsAppTemplate(name="order_update", language="en_US", body_parameters=("Ana", "#1042"))
    [request] = build_requests(outbound(Channel.WHATSAPP, "Your order #1042", template=template))
    assert request.kind == "template"
    assert request.body == {
        **WA_HEAD,
        "type": "template",
        "template": {
            "name": "order_update",
            "language": {"code": "en_US"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "#1042"}]}
            ],
        },
    }
    [plain] = build_requests(outbound(Channel.WHATSAPP, "hi", template=WhatsAppTemplate(name="hello", language="es")))
    assert plain.body["template"] == {"name": "hello", "language": {"code": "es"}}


@pytest.mark.parametrize("channel", [Channel.MESSENGER, Channel.INSTAGRAM])
def test_messenger_and_instagram_text_is_a_response(channel: Channel) -> None:
    [request] = build_requests(outbound(channel))
    assert request.kind == "text"
    assert request.body == {
        "recipient": {"id": "2222222222222222"},
        "messaging_type": "RESPONSE",
        "message": {"text": "Hello!"},
    }


@pytest.mark.parametrize("channel", [Channel.MESSENGER, Channel.INSTAGRAM])
def test_a_tag_turns_the_send_into_a_tagged_message(channel: Channel) -> None:
    [request] = build_requests(outbound(channel), tag="HUMAN_AGENT")
    assert (request.body["messaging_type"], request.body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


def test_messenger_quick_replies_ride_on_the_text() -> None:
    [request] = build_requests(outbound(Channel.MESSENGER, "Add it?", quick_replies=YES_NO))
    assert request.kind == "quick_replies"
    assert request.body["message"] == {
        "text": "Add it?",
        "quick_replies": [
            {"content_type": "text", "title": "Yes", "payload": "ANSWER_YES"},
            {"content_type": "text", "title": "No", "payload": "ANSWER_NO"},
        ],
    }


def test_messenger_sends_an_image_then_its_text_with_the_buttons_last() -> None:
    image, text = build_requests(outbound(Channel.INSTAGRAM, "This one?", image_url=PICTURE, quick_replies=YES_NO))
    assert image.kind == "image"
    assert image.body["message"] == {"attachment": {"type": "image", "payload": {"url": PICTURE}}}
    assert text.kind == "quick_replies"
    assert text.body["message"] == {"text": "This one?", "quick_replies": _quick(YES_NO)}
    [alone] = build_requests(outbound(Channel.MESSENGER, "", image_url=PICTURE), tag="HUMAN_AGENT")
    assert (alone.kind, alone.body["tag"]) == ("image", "HUMAN_AGENT")


def _quick(replies: tuple[QuickReply, ...]) -> list[dict[str, str]]:
    return [{"content_type": "text", "title": r.title, "payload": r.payload} for r in replies]


def test_the_sandbox_reads_back_every_kind_the_sender_builds() -> None:
    template = WhatsAppTemplate(name="order_update", language="en")
    cases = [
        (outbound(Channel.WHATSAPP, "hi"), "text", "hi"),
        (outbound(Channel.WHATSAPP, "pick", quick_replies=YES_NO), "interactive", "pick"),
        (outbound(Channel.WHATSAPP, "cap", image_url=PICTURE), "image", "cap"),
        (outbound(Channel.WHATSAPP, "", image_url=PICTURE), "image", PICTURE),
        (outbound(Channel.WHATSAPP, "x", template=template), "template", "order_update"),
        (outbound(Channel.MESSENGER, "hi"), "text", "hi"),
        (outbound(Channel.MESSENGER, "pick", quick_replies=YES_NO), "quick_replies", "pick"),
        (outbound(Channel.INSTAGRAM, "", image_url=PICTURE), "image", PICTURE),
    ]
    for message, kind, text in cases:
        body = build_requests(message)[-1].body
        entry = whatsapp_entry(body) if message.channel is Channel.WHATSAPP else messaging_entry(body)
        assert (entry["kind"], entry["text"], entry["to"]) == (kind, text, message.customer_id)
    assert messaging_entry(build_requests(outbound(Channel.MESSENGER), tag="HUMAN_AGENT")[0].body)["tag"] == (
        "HUMAN_AGENT"
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"channel": Channel.WHATSAPP, "quick_replies": (QuickReply(title="a", payload="a"),) * 4},
        {"channel": Channel.WHATSAPP, "quick_replies": (QuickReply(title="a", payload="p" * 257),)},
        {"channel": Channel.WHATSAPP, "quick_replies": YES_NO, "text": "x" * 1025},
        {"channel": Channel.MESSENGER, "quick_replies": (QuickReply(title="a", payload="a"),) * 14},
        {"channel": Channel.MESSENGER, "quick_replies": YES_NO, "text": ""},
        {"channel": Channel.MESSENGER, "template": WhatsAppTemplate(name="t", language="en")},
        {"channel": Channel.WHATSAPP, "template": WhatsAppTemplate(name="t", language="en"), "image_url": PICTURE},
    ],
    ids=["wa-4-buttons", "wa-long-id", "wa-long-body", "14-quick-replies", "no-text", "template-off-wa", "tpl+img"],
)
def test_a_message_that_cannot_fit_its_channel_is_refused_by_the_schema(fields: dict[str, Any]) -> None:
    channel = fields.pop("channel")
    with pytest.raises(ValidationError):
        outbound(channel, **fields)


def test_a_quick_reply_title_over_twenty_characters_is_refused() -> None:
    with pytest.raises(ValidationError):
        QuickReply(title="x" * 21, payload="p")


def test_whatsapp_posts_to_its_number_and_messenger_and_instagram_to_me_and_the_token_stays_out_of_repr() -> None:
    wa = SendTarget(channel=Channel.WHATSAPP, account_external_id="1055", customer_id="1", access_token="EAAGx")
    page = SendTarget(channel=Channel.INSTAGRAM, account_external_id="1784", customer_id="1", access_token="EAAGx")
    assert send_url("https://graph", wa).endswith("/v25.0/1055/messages")
    assert send_url("https://graph", page).endswith("/v25.0/me/messages")
    assert "EAAGx" not in repr(wa)


def error(code: int, subcode: int | None = None, message: str = "boom") -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        body["error_subcode"] = subcode
    return {"error": body}


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80007, 130429, 131048, 131056])
def test_rate_limit_codes_are_worth_retrying_whatever_the_status(code: int) -> None:
    assert isinstance(classify(400, error(code)), SendUnavailable)
    assert isinstance(classify(429, error(code)), SendUnavailable)


@pytest.mark.parametrize("payload", [None, {}, "<html>busy</html>", error(1), {"error": "text"}])
def test_a_429_or_5xx_is_worth_retrying_even_without_a_readable_error(payload: object) -> None:
    assert isinstance(classify(429, payload), SendUnavailable)
    assert isinstance(classify(503, payload), SendUnavailable)


@pytest.mark.parametrize(
    ("code", "subcode"), [(10, 2018278), (551, None), (131047, None)], ids=["messenger", "unavailable", "whatsapp"]
)
def test_outside_window_errors_are_permanent_window_refusals(code: int, subcode: int | None) -> None:
    exc = classify(400, error(code, subcode))
    assert isinstance(exc, SendRejected)
    assert (exc.kind, exc.code) == (RejectKind.WINDOW, code)


@pytest.mark.parametrize("code", [190, 102, 10, 200, 230, 299])
def test_token_and_permission_errors_are_permanent_token_refusals(code: int) -> None:
    exc = classify(400 if code != 190 else 401, error(code))
    assert isinstance(exc, SendRejected)
    assert exc.kind is RejectKind.TOKEN


@pytest.mark.parametrize("payload", [error(100), error(131026), error(132001), None, {"error": {"code": "4"}}])
def test_other_client_errors_are_permanent_request_refusals(payload: object) -> None:
    exc = classify(400, payload)
    assert isinstance(exc, SendRejected)
    assert exc.kind is RejectKind.REQUEST


def test_an_error_message_never_keeps_the_access_token() -> None:
    exc = classify(401, error(190, message="Invalid OAuth access token EAAGsecret123"), secret="EAAGsecret123")
    assert "EAAGsecret123" not in str(exc)
    assert "code 190" in str(exc)
