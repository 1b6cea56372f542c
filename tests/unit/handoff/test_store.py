"""Handoff commands applied to an in-memory SQLite database: tickets, mode, outbox, dedup and tenancy."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from schemas.channel import Author, OutboundMessage
from schemas.envelope import Actor, ActorKind, Channel, Envelope
from schemas.handoff import (
    AssignHandoff,
    HandoffAssigned,
    HandoffOpened,
    HandoffReason,
    HandoffReplied,
    HandoffResolved,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
)
from schemas.registry import adapter_for
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_EVENTS
from sellmesh.db import session_scope
from sellmesh.outbox import OutboxRow
from sellmesh.service import derived_id
from sellmesh.subscriber import PermanentError
from services.handoff.domain import Command, ConversationMode, Ticket, TicketStatus
from services.handoff.handlers import apply_command
from services.handoff.store import HandoffStore, HandoffTicketRow

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
STAFF = Actor(kind=ActorKind.STAFF, id="staff-ana")


def _envelope(tenant_id: uuid.UUID, conversation_id: str) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "correlation_id": uuid.uuid4(),
        "occurred_at": AT,
        "producer": "test",
        "conversation_id": conversation_id,
    }


def request_cmd(tenant_id: uuid.UUID, conversation_id: str = "conv-1", note: str = "") -> RequestHandoff:
    return RequestHandoff.model_validate(
        {
            **_envelope(tenant_id, conversation_id),
            "actor": Actor(kind=ActorKind.AI),
            "reason": HandoffReason.CUSTOMER_ASKED,
            "channel": Channel.INSTAGRAM,
            "channel_account_id": "ig-1",
            "customer_id": "igsid-1",
            "note": note,
        }
    )


def reply_cmd(tenant_id: uuid.UUID, conversation_id: str = "conv-1") -> ReplyHandoff:
    return ReplyHandoff.model_validate({**_envelope(tenant_id, conversation_id), "actor": STAFF, "text": "Hi!"})


def resolve_cmd(tenant_id: uuid.UUID, conversation_id: str = "conv-1") -> ResolveHandoff:
    return ResolveHandoff.model_validate({**_envelope(tenant_id, conversation_id), "actor": STAFF})


def apply(engine: Engine, command: Command) -> ConversationMode:
    return apply_command(engine, command, AT)


def published(engine: Engine) -> list[tuple[str, str, Envelope]]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxRow).order_by(col(OutboxRow.id))).all()
        return [(r.topic, r.key, adapter_for(r.topic).validate_json(r.payload)) for r in rows]


def tickets(engine: Engine, tenant_id: uuid.UUID, conversation_id: str = "conv-1") -> list[Ticket]:
    with session_scope(engine) as session:
        return HandoffStore(session).tickets(tenant_id, conversation_id)


def mode_of(engine: Engine, tenant_id: uuid.UUID, conversation_id: str = "conv-1") -> ConversationMode:
    with session_scope(engine) as session:
        return HandoffStore(session).mode(tenant_id, conversation_id)


def test_request_opens_a_ticket_puts_the_conversation_in_human_mode_and_queues_opened(engine: Engine) -> None:
    tenant = uuid.uuid4()
    command = request_cmd(tenant, note="wants a person")
    assert apply(engine, command) is ConversationMode.HUMAN
    [ticket] = tickets(engine, tenant)
    assert ticket.status is TicketStatus.OPEN and ticket.opened_at == AT and ticket.notes == ("wants a person",)
    [(topic, key, event)] = published(engine)
    assert (topic, key) == (HANDOFF_EVENTS, "conv-1")
    assert isinstance(event, HandoffOpened)
    assert event.ticket_id == ticket.id and event.note == "wants a person"
    assert event.event_id == derived_id(command.event_id, "opened")
    assert (event.tenant_id, event.correlation_id) == (tenant, command.correlation_id)
    assert (event.causation_id, event.producer) == (command.event_id, "handoff")


def test_second_request_keeps_one_open_ticket_and_publishes_nothing_new(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    apply(engine, request_cmd(tenant, note="still waiting"))
    [ticket] = tickets(engine, tenant)
    assert ticket.notes == ("customer_asked: still waiting",)
    assert len(published(engine)) == 1


def test_database_refuses_a_second_open_ticket_for_a_conversation(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    [ticket] = tickets(engine, tenant)
    duplicate = HandoffTicketRow(
        id="another",
        tenant_id=tenant,
        conversation_id="conv-1",
        channel="instagram",
        channel_account_id="ig-1",
        customer_id="igsid-1",
        status="open",
        reason="customer_asked",
        opened_at=AT,
    )
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(duplicate)
    assert [t.id for t in tickets(engine, tenant)] == [ticket.id]


def test_reply_without_an_open_ticket_is_rejected_and_writes_nothing(engine: Engine) -> None:
    tenant = uuid.uuid4()
    with pytest.raises(PermanentError, match="NoOpenTicket"):
        apply(engine, reply_cmd(tenant))
    assert published(engine) == []
    assert tickets(engine, tenant) == []


def test_reply_queues_a_human_outbound_message_keyed_by_conversation(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    command = reply_cmd(tenant)
    assert apply(engine, command) is ConversationMode.HUMAN
    (_, _, replied), (topic, key, outbound) = published(engine)[1:]
    assert isinstance(replied, HandoffReplied) and replied.staff_id == "staff-ana"
    assert (topic, key) == (CHANNEL_OUTBOUND, "conv-1")
    assert isinstance(outbound, OutboundMessage)
    assert (outbound.author, outbound.text, outbound.channel) == (Author.HUMAN, "Hi!", Channel.INSTAGRAM)
    assert (outbound.channel_account_id, outbound.customer_id) == ("ig-1", "igsid-1")
    assert outbound.event_id == derived_id(command.event_id, "outbound")


def test_resolve_closes_the_ticket_and_returns_the_conversation_to_ai(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    assert apply(engine, resolve_cmd(tenant)) is ConversationMode.AI
    assert mode_of(engine, tenant) is ConversationMode.AI
    [ticket] = tickets(engine, tenant)
    assert ticket.status is TicketStatus.RESOLVED and ticket.resolved_at == AT
    assert isinstance(published(engine)[-1][2], HandoffResolved)
    with pytest.raises(PermanentError):
        apply(engine, reply_cmd(tenant))


def test_a_request_after_resolve_opens_a_new_ticket(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    apply(engine, resolve_cmd(tenant))
    apply(engine, request_cmd(tenant))
    assert [t.status for t in tickets(engine, tenant)] == [TicketStatus.RESOLVED, TicketStatus.OPEN]
    assert mode_of(engine, tenant) is ConversationMode.HUMAN


def test_a_duplicate_command_does_nothing_twice(engine: Engine) -> None:
    tenant = uuid.uuid4()
    request, reply = request_cmd(tenant, note="once"), reply_cmd(tenant)
    for command in (request, request, reply, reply):
        assert apply(engine, command) is ConversationMode.HUMAN
    [ticket] = tickets(engine, tenant)
    assert ticket.notes == ("once",)
    assert [topic for topic, _, _ in published(engine)] == [HANDOFF_EVENTS, HANDOFF_EVENTS, CHANNEL_OUTBOUND]


def test_a_duplicate_reports_the_current_mode_so_the_mirror_can_be_repaired(engine: Engine) -> None:
    tenant = uuid.uuid4()
    request = request_cmd(tenant)
    apply(engine, request)
    apply(engine, resolve_cmd(tenant))
    assert apply(engine, request) is ConversationMode.AI


def test_a_command_for_another_tenants_conversation_does_not_touch_this_tenants_ticket(engine: Engine) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    apply(engine, request_cmd(ours))
    with pytest.raises(PermanentError):
        apply(engine, reply_cmd(theirs))
    with pytest.raises(PermanentError):
        apply(engine, resolve_cmd(theirs))
    apply(engine, request_cmd(theirs, note="theirs"))
    [our_ticket] = tickets(engine, ours)
    [their_ticket] = tickets(engine, theirs)
    assert our_ticket.status is TicketStatus.OPEN and our_ticket.notes == ()
    assert their_ticket.id != our_ticket.id and their_ticket.notes == ("theirs",)
    assert mode_of(engine, ours) is ConversationMode.HUMAN


def test_auto_assign_asks_the_staff_lookup_for_the_commands_tenant(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    asked: list[uuid.UUID] = []

    def lookup(tenant_id: uuid.UUID) -> list[str]:
        asked.append(tenant_id)
        return ["staff-bo"]

    assign = AssignHandoff.model_validate({**_envelope(tenant, "conv-1"), "actor": Actor(kind=ActorKind.SYSTEM)})
    apply_command(engine, assign, AT, lookup)
    assert asked == [tenant]
    [ticket] = tickets(engine, tenant)
    assert ticket.assigned_to == "staff-bo"
    assigned = published(engine)[-1][2]
    assert isinstance(assigned, HandoffAssigned) and assigned.staff_id == "staff-bo"
