"""The handoff loop over the real broker: AI → a person (assigned automatically) → back to the AI with the note."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import litellm
import pytest
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ModelResponse
from sqlmodel import Session

from schemas.channel import OutboundMessage
from schemas.envelope import Actor, ActorKind
from schemas.handoff import (
    HandoffCommand,
    HandoffRejected,
    HandoffRejectionReason,
    ReplyHandoff,
    ResolveHandoff,
    SetAvailability,
)
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_COMMANDS, HANDOFF_EVENTS, dlq_of
from sellmesh.broker import publish
from sellmesh.service import derived_id, now
from services.agent.offline_model import OfflineSalesModel
from services.gateway.query import find_channel_account
from services.gateway.store import Tenant
from services.handoff.query import conversation_mode, open_inbox
from tests.builders import envelope, read_topic
from tests.e2e.conftest import Shop, eventually, new_customer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="package")]

PROVIDER = "sellmesh-capture"
# Every prompt the capturing model received, newest last.
PROMPTS: list[list[dict[str, Any]]] = []


class CapturingModel(CustomLLM):
    """The offline model, recording what it was asked: the test reads the AI's input, not only its output."""

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return self.completion(*args, **kwargs)

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        PROMPTS.append(list(kwargs.get("messages") or []))
        return OfflineSalesModel().completion(*args, **kwargs)


@pytest.fixture
def capturing(shop: Shop) -> Iterator[list[list[dict[str, Any]]]]:
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map = [
            *litellm.custom_provider_map,
            {"provider": PROVIDER, "custom_handler": CapturingModel()},
        ]
    with Session(shop.engine) as session:
        tenant = session.get(Tenant, shop.tenant_id)
        assert tenant is not None
        tenant.training = json.dumps({"model": f"{PROVIDER}/sales"})
        session.add(tenant)
        session.commit()
    PROMPTS.clear()
    yield PROMPTS


def conversation_of(shop: Shop, customer: str) -> str:
    account = find_channel_account(shop.engine, channel="whatsapp", external_id=shop.phone_number_id)
    assert account is not None
    return str(derived_id("conversation", shop.tenant_id, account.id, customer))


async def command(mesh: Any, message: HandoffCommand, key: str) -> None:
    await publish(mesh.ctx.broker, HANDOFF_COMMANDS, message, key=key)


async def test_a_person_takes_over_answers_and_hands_back_and_the_ai_knows_the_note(
    shop: Shop, mesh: Any, capturing: list[list[dict[str, Any]]]
) -> None:
    staff = Actor(kind=ActorKind.STAFF, id=f"staff-{uuid.uuid4().hex[:8]}")
    await command(
        mesh, SetAvailability(**envelope(shop.tenant_id), actor=staff, staff_id=staff.id, available=True), staff.id
    )
    customer = new_customer()
    await shop.say(customer, "hello")
    await shop.wait_for_replies(customer, 1)
    await shop.say(customer, "I want to talk to a person")
    await shop.wait_for_replies(customer, 2)
    conversation = conversation_of(shop, customer)

    async def inbox() -> list[Any]:
        return [e for e in open_inbox(shop.engine, shop.tenant_id, now=now()) if e.conversation_id == conversation]

    [entry] = await eventually(inbox, lambda found: len(found) == 1 and found[0].assigned_to == staff.id)
    reply = ReplyHandoff(
        **envelope(shop.tenant_id), conversation_id=conversation, actor=staff, text="Hi, a person here!"
    )
    await command(mesh, reply, conversation)
    replies = await shop.wait_for_replies(customer, 3)
    assert replies[-1]["text"] == "Hi, a person here!"
    sent = [
        OutboundMessage.model_validate_json(r.value)
        for r in await read_topic(mesh.settings.kafka_bootstrap_servers, CHANNEL_OUTBOUND, timeout_ms=300)
    ]
    [human] = [m for m in sent if m.text == "Hi, a person here!"]
    assert human.author.value == "human" and human.conversation_id == conversation
    note = f"gave a 10% voucher code {uuid.uuid4().hex[:6]}"
    resolve = ResolveHandoff(**envelope(shop.tenant_id), conversation_id=conversation, actor=staff, note=note)
    await command(mesh, resolve, conversation)
    redis = mesh.ctx.redis
    await eventually(lambda: conversation_mode(redis, shop.tenant_id, conversation), lambda mode: mode == "ai")
    await eventually(lambda: redis.exists(f"agent:handoff-resumed:{shop.tenant_id}:{entry.ticket_id}"), bool)
    capturing.clear()
    await shop.say(customer, "how much is the mug?")
    replies = await shop.wait_for_replies(customer, 4)
    assert "9.00 EUR" in replies[-1]["text"]
    [prompt] = capturing
    seen = json.dumps(prompt)
    assert note in seen and "Hi, a person here!" in seen


async def test_a_message_nobody_answered_before_the_handback_is_answered_by_the_ai_once(shop: Shop, mesh: Any) -> None:
    """The customer writes while a person owns the conversation (the AI stays quiet), and the ticket is resolved
    without a reply: the AI answers that message after the handback, once, and only that one."""
    customer = new_customer()
    await shop.say(customer, "I want to talk to a person")
    await shop.wait_for_replies(customer, 1)
    conversation = conversation_of(shop, customer)
    redis = mesh.ctx.redis
    await eventually(lambda: conversation_mode(redis, shop.tenant_id, conversation), lambda mode: mode == "human")
    await shop.say(customer, "how much is the mug?")

    async def in_inbox() -> list[Any]:
        return [
            e
            for e in open_inbox(shop.engine, shop.tenant_id, now=now())
            if e.conversation_id == conversation and any(m.text == "how much is the mug?" for m in e.messages)
        ]

    await eventually(in_inbox, bool)
    owner = Actor(kind=ActorKind.OWNER, id="owner")
    resolve = ResolveHandoff(**envelope(shop.tenant_id), conversation_id=conversation, actor=owner)
    await command(mesh, resolve, conversation)
    replies = await shop.wait_for_replies(customer, 2)
    assert "9.00 EUR" in replies[-1]["text"]
    await command(mesh, resolve, conversation)  # redelivered: nothing answered twice
    await shop.say(customer, "thanks")
    await shop.wait_for_replies(customer, 3)
    await asyncio.sleep(1.0)  # a second answer to the mug question would have come by now
    assert len(await shop.replies(customer)) == 3


async def test_refused_commands_are_answered_with_a_reason_and_bad_bytes_go_to_the_dlq(shop: Shop, mesh: Any) -> None:
    bootstrap = mesh.settings.kafka_bootstrap_servers
    intruder = Actor(kind=ActorKind.STAFF, id=f"staff-{uuid.uuid4().hex[:8]}")
    stray = ReplyHandoff(
        **envelope(shop.tenant_id), conversation_id=f"conv-{uuid.uuid4().hex}", actor=intruder, text="psst"
    )
    await command(mesh, stray, stray.conversation_id)
    bad_key = f"garbage-{uuid.uuid4().hex}"
    await mesh.ctx.broker.publish(b"{not json", topic=HANDOFF_COMMANDS, key=bad_key.encode())

    async def rejections() -> list[HandoffRejected]:
        records = await read_topic(bootstrap, HANDOFF_EVENTS, timeout_ms=300)
        mine = [r.value for r in records if json.loads(r.value).get("command_id") == str(stray.event_id)]
        return [HandoffRejected.model_validate_json(value) for value in mine]

    [refusal] = await eventually(rejections, lambda found: len(found) == 1)
    assert refusal.reason is HandoffRejectionReason.UNKNOWN_STAFF

    async def letters() -> list[Any]:
        return [
            r
            for r in await read_topic(bootstrap, dlq_of(HANDOFF_COMMANDS), timeout_ms=300)
            if r.key == bad_key.encode()
        ]

    [letter] = await eventually(letters, lambda found: len(found) == 1)
    assert dict(letter.headers)["x-error-kind"] == b"invalid"
    assert letter.value == b"{not json"
