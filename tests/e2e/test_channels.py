"""All three channels through the running mesh: batches, echoes, statuses, unknown accounts, tenant walls."""

import asyncio
import json
import uuid
from typing import Any

import pytest
from sqlmodel import Session, select

from schemas.handoff import HandoffReason
from schemas.topics import CHANNEL_DELIVERY, CHANNEL_RAW, dlq_of
from sellmesh.service import derived_id
from services.gateway.query import find_channel_account
from services.handoff.query import conversation_mode
from services.handoff.store import HandoffTicketRow
from services.ingest.payloads import encode, messenger_text, whatsapp_text
from services.ingest.signature import sign
from services.ingest.store import OutboundSend
from tests.builders import read_topic
from tests.e2e.conftest import Shop, eventually, new_customer, seed_shop

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="package")]


def conversation_of(shop: Shop, channel: str, external_id: str, customer: str) -> str:
    account = find_channel_account(shop.engine, channel=channel, external_id=external_id)
    assert account is not None
    return str(derived_id("conversation", shop.tenant_id, account.id, customer))


@pytest.mark.parametrize("instagram", [False, True], ids=["messenger", "instagram"])
async def test_messenger_and_instagram_customers_get_replies(shop: Shop, instagram: bool) -> None:
    customer = new_customer()
    page = shop.instagram_id if instagram else shop.page_id
    body = encode(messenger_text(page_id=page, customer=customer, text="hello", instagram=instagram))
    assert (await shop.post_webhook(body)).status_code == 200
    [reply] = await shop.wait_for_replies(customer, 1)
    assert reply["account_id"] == "me"
    assert "Welcome" in reply["text"]


async def test_every_message_of_a_batched_body_is_processed(shop: Shop) -> None:
    first, second = new_customer(), new_customer()
    body = whatsapp_text(phone_number_id=shop.phone_number_id, customer=first, text="hello")
    other = whatsapp_text(phone_number_id=shop.phone_number_id, customer=second, text="how much is the mug?")
    body["entry"].append(other["entry"][0])
    assert (await shop.post_webhook(encode(body))).status_code == 200
    assert "Welcome" in (await shop.wait_for_replies(first, 1))[0]["text"]
    assert "9.00 EUR" in (await shop.wait_for_replies(second, 1))[0]["text"]


async def test_items_for_unknown_accounts_or_unreadable_are_kept_in_the_dlq(shop: Shop, kafka_bootstrap: str) -> None:
    customer, stranger = new_customer(), f"77{uuid.uuid4().int % 10**12}"
    body = messenger_text(page_id=shop.page_id, customer=customer, text="hello")
    body["entry"].append(messenger_text(page_id=stranger, customer=customer, text="hi")["entry"][0])
    body["entry"][0]["messaging"].append({"sender": {"id": customer}, "timestamp": "soon", "message": {"text": "x"}})
    assert (await shop.post_webhook(encode(body))).status_code == 200
    await shop.wait_for_replies(customer, 1)

    async def kept() -> list[Any]:
        records = await read_topic(kafka_bootstrap, dlq_of(CHANNEL_RAW), timeout_ms=300)
        return [r for r in records if stranger.encode() in dict(r.headers).get("x-error-message", b"")]

    [letter] = await eventually(kept, bool)
    headers = dict(letter.headers)
    assert headers["x-error-kind"] == b"unroutable_items"
    assert b"unknown channel account" in headers["x-error-message"]
    assert b"ValueError" in headers["x-error-message"]
    assert json.loads(letter.value)["body"] == encode(body).decode()


async def test_an_item_that_can_never_be_taken_is_kept_and_the_rest_of_the_webhook_is_answered(
    shop: Shop, kafka_bootstrap: str
) -> None:
    """A junk change, a status our events refuse (no message id) and a text the database may refuse (a NUL byte):
    each is kept with the body; the customer who wrote properly in the same webhook is answered."""
    customer, nul_writer = new_customer(), new_customer()
    body = whatsapp_text(phone_number_id=shop.phone_number_id, customer=customer, text="hello")
    value = body["entry"][0]["changes"][0]["value"]
    value["statuses"] = [{"id": "", "status": "delivered", "timestamp": "1790000000", "recipient_id": customer}]
    nul = whatsapp_text(phone_number_id=shop.phone_number_id, customer=nul_writer, text="bad\u0000byte")
    value["messages"].insert(0, nul["entry"][0]["changes"][0]["value"]["messages"][0])
    body["entry"][0]["changes"].insert(0, "junk")
    assert (await shop.post_webhook(encode(body))).status_code == 200
    assert "Welcome" in (await shop.wait_for_replies(customer, 1))[0]["text"]

    async def kept() -> list[Any]:
        records = await read_topic(kafka_bootstrap, dlq_of(CHANNEL_RAW), timeout_ms=300)
        return [r for r in records if json.loads(r.value)["body"] == encode(body).decode()]

    [letter] = await eventually(kept, bool)
    problems = dict(letter.headers)["x-error-message"]
    assert b"change is not an object" in problems and b"ValidationError" in problems


async def test_a_person_answering_from_the_business_inbox_takes_the_conversation_over(shop: Shop, mesh: Any) -> None:
    customer = new_customer()
    echo = encode(messenger_text(page_id=shop.page_id, customer=customer, text="Hi, Anna here!", echo=True))
    assert (await shop.post_webhook(echo)).status_code == 200
    conversation = conversation_of(shop, "messenger", shop.page_id, customer)
    await eventually(lambda: conversation_mode(mesh.ctx.redis, shop.tenant_id, conversation), lambda m: m == "human")
    assert await shop.replies(customer) == []


async def test_echo_of_our_own_reply_is_recorded_but_changes_nothing(shop: Shop, mesh: Any) -> None:
    customer = new_customer()
    await shop.post_webhook(encode(messenger_text(page_id=shop.page_id, customer=customer, text="hello")))
    [reply] = await shop.wait_for_replies(customer, 1)
    echo = messenger_text(
        page_id=shop.page_id, customer=customer, text=reply["text"], mid=reply["message_id"], echo=True
    )
    assert (await shop.post_webhook(encode(echo))).status_code == 200
    await shop.post_webhook(
        encode(messenger_text(page_id=shop.page_id, customer=customer, text="how much is the mug?"))
    )
    replies = await shop.wait_for_replies(customer, 2)
    assert "9.00 EUR" in replies[1]["text"]
    conversation = conversation_of(shop, "messenger", shop.page_id, customer)
    assert await conversation_mode(mesh.ctx.redis, shop.tenant_id, conversation) == "ai"


async def test_another_tenants_account_signed_with_this_tenants_secret_is_refused(shop: Shop) -> None:
    _, _, other_phone, _, _ = await asyncio.to_thread(seed_shop, shop.engine)
    body = encode(whatsapp_text(phone_number_id=other_phone, customer=new_customer(), text="hello"))
    response = await shop.post_webhook(body, signature=sign(body, shop.app_secret))
    assert response.status_code == 401


async def test_whatsapp_statuses_become_delivery_events(shop: Shop, kafka_bootstrap: str) -> None:
    wamid = f"wamid.status.{uuid.uuid4().hex}"
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "waba",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "metadata": {"phone_number_id": shop.phone_number_id},
                            "statuses": [
                                {"id": wamid, "status": "read", "timestamp": "1790000000", "recipient_id": "1555"},
                                {"id": wamid, "status": "failed", "timestamp": "1790000001", "recipient_id": "1555",
                                 "errors": [{"code": 131047, "title": "Re-engagement message"}]},
                            ],
                        },
                    }
                ],
            }
        ],
    }  # fmt: skip
    assert (await shop.post_webhook(encode(body))).status_code == 200

    async def statuses() -> list[dict[str, Any]]:
        records = await read_topic(kafka_bootstrap, CHANNEL_DELIVERY, timeout_ms=300)
        return [json.loads(r.value) for r in records if wamid.encode() in r.value]

    found = await eventually(statuses, lambda got: len(got) == 2)
    assert {(s["state"], s["error_code"]) for s in found} == {("read", None), ("failed", "131047")}
    assert all(s["tenant_id"] == str(shop.tenant_id) for s in found)


def whatsapp_status(phone_number_id: str, wamid: str, customer: str, status: str) -> dict[str, Any]:
    error = [{"code": 131047, "title": "Re-engagement message"}] if status == "failed" else []
    value = {
        "metadata": {"phone_number_id": phone_number_id},
        "statuses": [
            {"id": wamid, "status": status, "timestamp": "1790000001", "recipient_id": customer, "errors": error}
        ],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "waba", "changes": [{"field": "messages", "value": value}]}],
    }


async def test_an_ai_reply_the_channel_later_reports_undelivered_brings_a_person_in(shop: Shop) -> None:
    """WhatsApp took the reply, then reported it failed: the customer has no answer, so a person is asked (once,
    however often the status is delivered)."""
    customer = new_customer()
    await shop.post_webhook(
        encode(whatsapp_text(phone_number_id=shop.phone_number_id, customer=customer, text="hello"))
    )
    await shop.wait_for_replies(customer, 1)

    def sent_ids() -> list[tuple[str, str]]:
        with Session(shop.engine) as session:
            rows = session.exec(select(OutboundSend).where(OutboundSend.tenant_id == shop.tenant_id)).all()
            return [(row.provider_message_id or "", row.conversation_id) for row in rows if row.status == "sent"]

    [(wamid, conversation)] = await eventually(lambda: asyncio.to_thread(sent_ids), bool)
    failed = encode(whatsapp_status(shop.phone_number_id, wamid, customer, "failed"))
    for _ in range(2):
        assert (await shop.post_webhook(failed)).status_code == 200

    def tickets() -> list[HandoffTicketRow]:
        with Session(shop.engine) as session:
            query = select(HandoffTicketRow).where(HandoffTicketRow.conversation_id == conversation)
            return list(session.exec(query))

    [ticket] = await eventually(lambda: asyncio.to_thread(tickets), bool)
    assert ticket.reason == HandoffReason.CHANNEL_WINDOW_CLOSED.value and "undelivered" in ticket.notes
