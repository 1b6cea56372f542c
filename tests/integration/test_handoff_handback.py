"""Handing a conversation back to the AI: its memory gains what people said and the note, loses stale tool turns."""

import asyncio
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import Author, InboundMessage, OutboundMessage, ReactionContent, TextContent
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
from services.agent.burst import Burst, BurstBuffer
from services.agent.handback import Handback, waiting
from services.agent.model_call import ModelChoice
from services.agent.responder import Responder
from services.handoff.handlers import on_handoff_command
from services.handoff.mode import (
    handed_back,
    handed_key,
    handed_to_person,
    hold_human,
    mirror_human_unless_handed_back,
    mode_key,
    mode_of,
    set_mode,
)
from services.handoff.query import InboxMessage
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


class Unpublished:
    """A broker that must not be asked to publish anything."""

    async def publish(self, *_: Any, **__: Any) -> None:
        raise AssertionError("nothing should have been published")


async def refund_ticket_resolved(engine: Engine, redis: Redis) -> tuple[uuid.UUID, str, dict[str, InboundMessage]]:
    """The refund story up to a resolve: the AI's last word, a message after it, Ana's reply, then "thank you!"."""
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"
    said = {
        text: inbound(tenant, conversation, text, at)
        for text, at in (
            ("I want a refund for my mug", T0 - timedelta(minutes=2)),
            ("it arrived broken", T0 - timedelta(seconds=30)),
            ("thank you!", T0 + timedelta(minutes=4)),
        )
    }
    record_inbound(engine, said["I want a refund for my mug"])
    record_outbound(engine, ai_said(tenant, conversation, "Let me bring in a person.", T0 - timedelta(minutes=1)))
    record_inbound(engine, said["it arrived broken"])
    request = RequestHandoff(
        **envelope(tenant),
        conversation_id=conversation,
        actor=Actor(kind=ActorKind.AI),
        reason=HandoffReason.COMPLAINT_OR_REFUND,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
    )
    ana = Actor(kind=ActorKind.STAFF, id=f"ana-{uuid.uuid4().hex[:8]}")
    available = SetAvailability(**envelope(tenant), actor=ana, staff_id=ana.id, available=True)
    await on_handoff_command(available, engine=engine, redis=redis, at=T0)
    await on_handoff_command(request, engine=engine, redis=redis, at=T0)
    reply = ReplyHandoff(**envelope(tenant), conversation_id=conversation, actor=ana, text="Refunded 9.00 EUR today.")
    await on_handoff_command(reply, engine=engine, redis=redis, at=T0 + timedelta(minutes=3))
    record_inbound(engine, said["thank you!"])
    resolve = ResolveHandoff(**envelope(tenant), conversation_id=conversation, actor=ana, note="done")
    await on_handoff_command(resolve, engine=engine, redis=redis, at=T0 + timedelta(minutes=5))
    return tenant, str(derived_id(request.event_id, "ticket")), said


async def test_the_handback_records_which_messages_the_person_had_before_them(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant, _, said = await refund_ticket_resolved(migrated_engine, redis)
    conversation = said["thank you!"].conversation_id
    value = await redis.get(mode_key(tenant, conversation))
    assert handed_back(value) and mode_of(value) == "ai"
    ids = [m.event_id for m in said.values()]
    theirs = await handed_to_person(redis, tenant, conversation, ids)
    # Before the AI's last word, the first message was the AI's; everything after it was the ticket's.
    assert theirs == {said["it arrived broken"].event_id, said["thank you!"].event_id}


async def test_a_message_nobody_answered_before_the_handback_becomes_the_ais_next_turn_once(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant, ticket_id, said = await refund_ticket_resolved(migrated_engine, redis)
    conversation = said["thank you!"].conversation_id
    buffer = BurstBuffer(redis, quiet_seconds=0)
    handback = Handback(engine=migrated_engine, redis=redis, buffer=buffer)
    resolved = HandoffResolved(**envelope(tenant), conversation_id=conversation, ticket_id=ticket_id, note="done")
    await handback.on_handoff_event(resolved)
    await handback.on_handoff_event(resolved)  # a redelivery buffers nothing more
    burst = await buffer.claim(f"{tenant}:{conversation}")
    assert burst is not None
    [waiting] = burst.messages
    assert (waiting.content, waiting.customer_id, waiting.channel_account_id) == (
        TextContent(text="thank you!"),
        "c1",
        "acc",
    )
    assert waiting.event_id not in await handed_to_person(redis, tenant, conversation, [waiting.event_id])
    _, turns = await memory.context(redis, tenant, conversation)
    assert "thank you!" not in json.dumps(turns)  # in the turn, not twice in the prompt
    assert "Refunded 9.00 EUR today." in json.dumps(turns)


async def test_a_message_the_person_had_that_the_agent_reads_only_now_is_not_answered_again(
    migrated_engine: Engine, redis: Redis
) -> None:
    """The agent lagged: "it arrived broken" reaches its buffer after Ana answered it and handed back."""
    tenant, _, said = await refund_ticket_resolved(migrated_engine, redis)
    conversation = said["thank you!"].conversation_id
    buffer = BurstBuffer(redis, quiet_seconds=0)
    responder = Responder(
        engine=migrated_engine,
        redis=redis,
        broker=cast(KafkaBroker, Unpublished()),
        buffer=buffer,
        choice=ModelChoice(model="unused", fallbacks=[], timeout=1.0),
    )
    assert await buffer.add(said["it arrived broken"])
    burst = await buffer.claim(f"{tenant}:{conversation}")
    assert burst is not None and burst.state is not None and burst.state.handed_back
    answered = await responder.answer(burst)
    assert not answered.remember
    await buffer.finish(burst, answered)
    assert await buffer.claim(f"{tenant}:{conversation}") is None


async def test_the_handback_waits_for_the_mirror_write_before_it_reads_what_the_person_had(
    migrated_engine: Engine, redis: Redis
) -> None:
    """The `resolved` event can beat handoff's mirror write after the commit: read then, the handed set is empty."""
    tenant, ticket_id, said = await refund_ticket_resolved(migrated_engine, redis)
    conversation = said["thank you!"].conversation_id
    marker = await redis.get(mode_key(tenant, conversation))
    handed = await redis.smembers(handed_key(tenant, conversation))
    # The mirror write, the marker and the handed set with it, has not landed yet.
    await redis.set(mode_key(tenant, conversation), "human")
    await redis.delete(handed_key(tenant, conversation))
    buffer = BurstBuffer(redis, quiet_seconds=0)
    handback = Handback(engine=migrated_engine, redis=redis, buffer=buffer, mode_wait_seconds=5.0)
    resolved = HandoffResolved(**envelope(tenant), conversation_id=conversation, ticket_id=ticket_id, note="done")

    async def mirror_lands() -> None:
        await asyncio.sleep(0.3)
        await redis.sadd(handed_key(tenant, conversation), *handed)
        await redis.set(mode_key(tenant, conversation), marker)

    await asyncio.gather(handback.on_handoff_event(resolved), mirror_lands())
    burst = await buffer.claim(f"{tenant}:{conversation}")
    assert burst is not None and [m.content for m in burst.messages] == [TextContent(text="thank you!")]


async def test_a_handback_read_after_a_person_took_the_conversation_again_leaves_the_words_to_them(
    migrated_engine: Engine, redis: Redis
) -> None:
    """The agent lagged: by the time it reads `resolved`, the customer asked for a person again. Its memory still
    learns what happened; the waiting words are the new ticket's, and nothing is dead-lettered."""
    tenant, ticket_id, said = await refund_ticket_resolved(migrated_engine, redis)
    conversation = said["thank you!"].conversation_id
    await redis.set(mode_key(tenant, conversation), "human")
    buffer = BurstBuffer(redis, quiet_seconds=0)
    handback = Handback(engine=migrated_engine, redis=redis, buffer=buffer, mode_wait_seconds=0.2)
    resolved = HandoffResolved(**envelope(tenant), conversation_id=conversation, ticket_id=ticket_id, note="done")
    await handback.on_handoff_event(resolved)
    assert await buffer.claim(f"{tenant}:{conversation}") is None
    _, turns = await memory.context(redis, tenant, conversation)
    assert "Refunded 9.00 EUR today." in json.dumps(turns)


async def test_only_the_customers_messages_after_the_persons_last_word_are_waiting() -> None:
    def said(author: str, text: str) -> InboxMessage:
        return InboxMessage("in" if author == "customer" else "out", author, text, T0)

    transcript = [said("customer", "a"), said("human", "b"), said("customer", "c"), said("customer", "d")]
    assert [m.text for m in waiting(transcript)] == ["c", "d"]
    assert waiting([*transcript, said("human", "e")]) == []
    assert [m.text for m in waiting([said("customer", "x")])] == ["x"]
    # A message without words shows in the inbox as its kind, and asks for no answer of its own.
    assert [m.text for m in waiting([said("customer", "[reaction]"), said("customer", "[sticker]")])] == []
    assert [m.text for m in waiting([said("customer", "[see attached]")])] == ["[see attached]"]


class Recording:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    async def publish(self, body: bytes, *, topic: str, **_: Any) -> None:
        self.sent.append((topic, json.loads(body)))


async def test_giving_up_on_a_turn_asks_for_a_person_and_tells_the_customer_with_ids_a_repeat_keeps(
    migrated_engine: Engine, redis: Redis
) -> None:
    broker = Recording()
    responder = Responder(
        engine=migrated_engine,
        redis=redis,
        broker=cast(KafkaBroker, broker),
        buffer=BurstBuffer(redis, quiet_seconds=0),
        choice=ModelChoice(model="unused", fallbacks=[], timeout=1.0),
    )
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"
    message = inbound(tenant, conversation, "hello?", T0)
    burst = Burst(f"{tenant}:{conversation}", "token", [message], 1)
    await responder.give_up(burst)
    await responder.give_up(burst)
    first, second = broker.sent[:2], broker.sent[2:]
    # The same ids: the handoff and the sender each take them once.
    assert [body["event_id"] for _, body in first] == [body["event_id"] for _, body in second]
    (handoff_topic, handoff), (reply_topic, reply) = first
    assert (handoff_topic, handoff["type"], handoff["reason"]) == ("handoff.commands.v1", "request", "low_confidence")
    assert (reply_topic, reply["author"], reply["customer_id"]) == ("channel.outbound.v1", "system", "c1")


async def test_a_usage_row_the_database_refuses_does_not_undo_the_answer(migrated_engine: Engine, redis: Redis) -> None:
    responder = Responder(
        engine=migrated_engine,
        redis=redis,
        broker=cast(KafkaBroker, Recording()),
        buffer=BurstBuffer(redis, quiet_seconds=0),
        choice=ModelChoice(model="unused", fallbacks=[], timeout=1.0),
    )

    class Down:
        async def insert(self, _: Any) -> None:
            raise ConnectionError("database unreachable")

    responder.usage = cast(Any, Down())
    await responder._record_usage({"tenant_id": str(uuid.uuid4())})  # logged and counted, not raised


async def test_only_words_the_person_had_before_them_are_turned_into_the_ais_turn(
    migrated_engine: Engine, redis: Redis
) -> None:
    """A thumbs-up needs no answer, and a message that reached the inbox only after the resolve committed is
    answered by its own turn: answered here too, it would be answered twice."""
    tenant, ticket_id, said = await refund_ticket_resolved(migrated_engine, redis)
    conversation = said["thank you!"].conversation_id
    reaction = inbound(tenant, conversation, "x", T0 + timedelta(minutes=4, seconds=10)).model_copy(
        update={"content": ReactionContent(emoji="👍", reacted_to="m1")}
    )
    late = inbound(tenant, conversation, "one more thing", T0 + timedelta(minutes=4, seconds=20))
    for message in (reaction, late):  # logged by the inbox after the resolve committed
        record_inbound(migrated_engine, message)
    buffer = BurstBuffer(redis, quiet_seconds=0)
    resolved = HandoffResolved(**envelope(tenant), conversation_id=conversation, ticket_id=ticket_id, note="done")
    await Handback(engine=migrated_engine, redis=redis, buffer=buffer).on_handoff_event(resolved)
    burst = await buffer.claim(f"{tenant}:{conversation}")
    assert burst is not None
    assert [m.content for m in burst.messages] == [TextContent(text="thank you!")]
    _, turns = await memory.context(redis, tenant, conversation)
    assert "thank you!" not in json.dumps(turns)  # in the turn only, though it is not the transcript's last


async def test_a_request_that_never_commits_gives_back_the_last_handbacks_marker(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant, _, said = await refund_ticket_resolved(migrated_engine, redis)
    conversation = said["thank you!"].conversation_id
    marker = await redis.get(mode_key(tenant, conversation))
    assert handed_back(marker)
    await hold_human(redis, tenant, conversation, 60)
    assert await redis.get(mode_key(tenant, conversation)) == "human"
    await set_mode(redis, tenant, conversation, "ai")  # the request was refused, or its restore ran
    assert await redis.get(mode_key(tenant, conversation)) == marker
    # The reconcile read the table before that handback: its write of "human" must not land over the marker.
    before = datetime.fromtimestamp(int(marker.split(":")[1]) / 1000 - 1, UTC)
    assert await mirror_human_unless_handed_back(redis, tenant, conversation, read_at=before) is False
    assert await redis.get(mode_key(tenant, conversation)) == marker
    # A marker older than the reconcile's read (a Redis restored from a snapshot) gives way to the table's word.
    after = datetime.fromtimestamp(int(marker.split(":")[1]) / 1000 + 1, UTC)
    assert await mirror_human_unless_handed_back(redis, tenant, conversation, read_at=after) is True
    assert await redis.get(mode_key(tenant, conversation)) == "human"


@dataclass(frozen=True)
class AnaReplied:
    """A refund conversation the AI handed to Ana, who has replied and not yet resolved."""

    tenant: uuid.UUID
    conversation: str
    ana: Actor
    ticket_id: str


async def ana_replied(engine: Engine, redis: Redis, *, at: datetime) -> AnaReplied:
    tenant, conversation = uuid.uuid4(), f"conv-{uuid.uuid4().hex[:8]}"
    record_inbound(engine, inbound(tenant, conversation, "I want a refund", T0 - timedelta(minutes=2)))
    record_outbound(engine, ai_said(tenant, conversation, "Let me bring in a person.", T0 - timedelta(minutes=1)))
    request = RequestHandoff(
        **envelope(tenant),
        conversation_id=conversation,
        actor=Actor(kind=ActorKind.AI),
        reason=HandoffReason.COMPLAINT_OR_REFUND,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
    )
    ana = Actor(kind=ActorKind.STAFF, id=f"ana-{uuid.uuid4().hex[:8]}")
    available = SetAvailability(**envelope(tenant), actor=ana, staff_id=ana.id, available=True)
    await on_handoff_command(available, engine=engine, redis=redis, at=T0)
    await on_handoff_command(request, engine=engine, redis=redis, at=T0)
    reply = ReplyHandoff(**envelope(tenant), conversation_id=conversation, actor=ana, text="Refund done.")
    await on_handoff_command(reply, engine=engine, redis=redis, at=at)
    return AnaReplied(tenant, conversation, ana, str(derived_id(request.event_id, "ticket")))


async def ana_resolves(engine: Engine, redis: Redis, story: AnaReplied) -> None:
    resolve = ResolveHandoff(**envelope(story.tenant), conversation_id=story.conversation, actor=story.ana, note="done")
    await on_handoff_command(resolve, engine=engine, redis=redis, at=T0 + timedelta(minutes=5))


async def handed_back_to_the_ai(engine: Engine, redis: Redis, story: AnaReplied, buffer: BurstBuffer) -> Burst | None:
    """The agent takes the handback; what the buffer then holds for the AI to answer."""
    resolved = HandoffResolved(
        **envelope(story.tenant), conversation_id=story.conversation, ticket_id=story.ticket_id, note="done"
    )
    await Handback(engine=engine, redis=redis, buffer=buffer).on_handoff_event(resolved)
    return await buffer.claim(f"{story.tenant}:{story.conversation}")


async def test_a_message_the_agent_left_to_the_person_and_the_inbox_recorded_late_is_answered_at_the_handback(
    migrated_engine: Engine, redis: Redis
) -> None:
    """The customer wrote while Ana owned the conversation: the agent left the message to her. Handoff's inbox
    lagged and recorded it only after she resolved, so she never had it before her: the AI must answer it."""
    story = await ana_replied(migrated_engine, redis, at=T0 + timedelta(minutes=3))
    late = inbound(story.tenant, story.conversation, "and can I order a new one?", T0 + timedelta(minutes=4))
    buffer = BurstBuffer(redis, quiet_seconds=0)
    responder = Responder(
        engine=migrated_engine,
        redis=redis,
        broker=cast(KafkaBroker, Unpublished()),
        buffer=buffer,
        choice=ModelChoice(model="unused", fallbacks=[], timeout=1.0),
    )
    assert await buffer.add(late)
    burst = await buffer.claim(f"{story.tenant}:{story.conversation}")
    assert burst is not None and burst.state is not None and burst.state.mode == "human"
    await buffer.finish(burst, await responder.answer(burst))  # left to Ana
    resolve = ResolveHandoff(**envelope(story.tenant), conversation_id=story.conversation, actor=story.ana, note="done")
    await on_handoff_command(resolve, engine=migrated_engine, redis=redis, at=T0 + timedelta(minutes=5))
    record_inbound(migrated_engine, late)  # the inbox catches up only now
    answered_later = await handed_back_to_the_ai(migrated_engine, redis, story, buffer)
    assert answered_later is not None
    assert [m.content for m in answered_later.messages] == [TextContent(text="and can I order a new one?")]


async def test_a_message_written_just_after_the_persons_reply_is_waiting_whatever_its_whole_second_stamp(
    migrated_engine: Engine, redis: Redis
) -> None:
    """Ana replies at 12:03:00.700; the customer writes at 12:03:00.900, which WhatsApp stamps 12:03:00. By time
    the message would sort before her reply and read as answered; by the order handoff recorded them it waits."""
    story = await ana_replied(migrated_engine, redis, at=T0 + timedelta(minutes=3, milliseconds=700))
    after = inbound(story.tenant, story.conversation, "and can I order a new one?", T0 + timedelta(minutes=3))
    record_inbound(migrated_engine, after)
    await ana_resolves(migrated_engine, redis, story)
    answered_later = await handed_back_to_the_ai(migrated_engine, redis, story, BurstBuffer(redis, quiet_seconds=0))
    assert answered_later is not None
    assert [m.content for m in answered_later.messages] == [TextContent(text="and can I order a new one?")]
