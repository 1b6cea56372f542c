"""Handing a conversation back to the AI: its memory gains what people said and the note, loses stale tool turns."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import Author, InboundMessage, OutboundMessage, TextContent
from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import (
    HandoffCommand,
    HandoffReason,
    HandoffResolved,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
    SetAvailability,
)
from sellmesh.service import derived_id
from services.agent import memory
from services.agent.handback import Handback
from services.handoff.handlers import on_handoff_command
from tests.builders import envelope, record_inbound, record_outbound

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
# Staff ids are unique across tenants: a fixed one would belong to whichever test ran first.
ANA = Actor(kind=ActorKind.STAFF, id=f"ana-{uuid.uuid4().hex[:8]}")


def inbound(tenant: uuid.UUID, conversation: str, text: str, at: datetime) -> InboundMessage:
    return InboundMessage(
        **envelope(tenant),
        conversation_id=conversation,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
        message_id=f"wamid.{uuid.uuid4().hex}",
        sent_at=at,
        content=TextContent(text=text),
    )


def ai_said(tenant: uuid.UUID, conversation: str, text: str, at: datetime) -> OutboundMessage:
    return OutboundMessage(
        **envelope(tenant, occurred_at=at),
        conversation_id=conversation,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
        author=Author.SYSTEM,
        text=text,
    )


async def test_the_ai_resumes_with_the_persons_words_and_note_and_without_stale_tool_turns(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"
    engine = migrated_engine
    await memory.remember(
        redis,
        tenant,
        conversation,
        {"role": "user", "content": "I want a refund for my mug"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": true, "state": "paid"}'},
        {"role": "assistant", "content": "Let me bring in a person."},
    )
    record_inbound(engine, inbound(tenant, conversation, "I want a refund for my mug", T0 - timedelta(minutes=2)))
    record_outbound(engine, ai_said(tenant, conversation, "Let me bring in a person.", T0 - timedelta(minutes=1)))
    # Arrived after the AI's last word, while the handoff was opening: never answered by the AI.
    record_inbound(engine, inbound(tenant, conversation, "it arrived broken", T0 - timedelta(seconds=30)))
    commands: list[HandoffCommand] = [
        SetAvailability(**envelope(tenant), actor=ANA, staff_id=ANA.id, available=True),
        RequestHandoff(
            **envelope(tenant),
            conversation_id=conversation,
            actor=Actor(kind=ActorKind.AI),
            reason=HandoffReason.COMPLAINT_OR_REFUND,
            channel=Channel.WHATSAPP,
            channel_account_id="acc",
            customer_id="c1",
        ),
        ReplyHandoff(**envelope(tenant), conversation_id=conversation, actor=ANA, text="Refunded 9.00 EUR today."),
    ]
    for at, command in zip((T0, T0, T0 + timedelta(minutes=3)), commands, strict=True):
        await on_handoff_command(command, engine=engine, redis=redis, at=at)
    record_inbound(engine, inbound(tenant, conversation, "thank you!", T0 + timedelta(minutes=4)))
    resolve = ResolveHandoff(**envelope(tenant), conversation_id=conversation, actor=ANA, note="refund done, mug 9 EUR")
    await on_handoff_command(resolve, engine=engine, redis=redis, at=T0 + timedelta(minutes=5))
    ticket_id = str(derived_id(commands[1].event_id, "ticket"))
    resolved = HandoffResolved(
        **envelope(tenant), conversation_id=conversation, ticket_id=ticket_id, note="refund done, mug 9 EUR"
    )
    handback = Handback(engine=engine, redis=redis)
    await handback.on_handoff_event(resolved)
    await handback.on_handoff_event(resolved)  # a redelivery adds nothing
    _, turns = await memory.context(redis, tenant, conversation)
    assert not any(t["role"] == "tool" or t.get("tool_calls") for t in turns)
    assert [(t["role"], t["content"]) for t in turns[:-1]] == [
        ("user", "I want a refund for my mug"),
        ("assistant", "Let me bring in a person."),
        ("user", "it arrived broken"),
        ("assistant", "Refunded 9.00 EUR today."),
        ("user", "thank you!"),
    ]
    assert turns[-1]["role"] == "system"
    assert "complaint_or_refund" in turns[-1]["content"]
    assert turns[-1]["content"].endswith("Their note: refund done, mug 9 EUR")


async def test_a_resolution_naming_another_tenants_ticket_leaves_memory_alone(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"
    await memory.remember(redis, tenant, conversation, {"role": "user", "content": "hello"})
    stranger = HandoffResolved(**envelope(tenant), conversation_id=conversation, ticket_id="not-ours", note="x")
    await Handback(engine=migrated_engine, redis=redis).on_handoff_event(stranger)
    raw = await redis.lrange(f"agent:memory:{tenant}:{conversation}", 0, -1)
    assert [json.loads(r) for r in raw] == [{"role": "user", "content": "hello"}]
