"""Handoff commands applied to an in-memory SQLite database: tickets, roster, mode, outbox, dedup and tenancy."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from schemas.channel import Author, OutboundMessage
from schemas.envelope import Actor, ActorKind, Channel, Envelope
from schemas.handoff import (
    AssignHandoff,
    EscalationReason,
    HandoffAssigned,
    HandoffEscalated,
    HandoffOpened,
    HandoffReason,
    HandoffRejected,
    HandoffRejectionReason,
    HandoffReplied,
    HandoffResolved,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
    SetAvailability,
)
from schemas.registry import adapter_for
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_EVENTS
from sellmesh.db import session_scope
from sellmesh.outbox import OutboxRow
from sellmesh.service import derived_id
from services.gateway.query import HandoffSettings
from services.handoff.domain import ConversationMode, Ticket, TicketStatus
from services.handoff.handlers import Applied, apply_command
from services.handoff.inbox import InboxMessageRow
from services.handoff.notification import HandoffNotificationRow
from services.handoff.query import team_availability
from services.handoff.staff import HandoffStaffRow
from services.handoff.store import HandoffStore, HandoffTicketRow

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # a Friday
ANA = Actor(kind=ActorKind.STAFF, id="staff-ana")
OWNER = Actor(kind=ActorKind.OWNER, id="owner-olga")
PLAIN = HandoffSettings()


def _envelope(tenant_id: uuid.UUID, conversation_id: str | None = "conv-1") -> dict[str, object]:
    fields: dict[str, object] = {
        "event_id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "correlation_id": uuid.uuid4(),
        "occurred_at": AT,
        "producer": "test",
    }
    if conversation_id is not None:
        fields["conversation_id"] = conversation_id
    return fields


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


def reply_cmd(tenant_id: uuid.UUID, actor: Actor = ANA, conversation_id: str = "conv-1") -> ReplyHandoff:
    return ReplyHandoff.model_validate({**_envelope(tenant_id, conversation_id), "actor": actor, "text": "Hi!"})


def resolve_cmd(tenant_id: uuid.UUID, conversation_id: str = "conv-1", actor: Actor = ANA) -> ResolveHandoff:
    return ResolveHandoff.model_validate({**_envelope(tenant_id, conversation_id), "actor": actor})


def assign_cmd(tenant_id: uuid.UUID, staff_id: str = "", actor: Actor = OWNER) -> AssignHandoff:
    return AssignHandoff.model_validate({**_envelope(tenant_id), "actor": actor, "staff_id": staff_id})


def availability(
    tenant_id: uuid.UUID, staff_id: str, available: bool = True, actor: Actor | None = None
) -> SetAvailability:
    actor = actor or Actor(kind=ActorKind.STAFF, id=staff_id)
    return SetAvailability.model_validate(
        {**_envelope(tenant_id, None), "actor": actor, "staff_id": staff_id, "available": available}
    )


def apply(engine: Engine, command: object, at: datetime = AT, settings: HandoffSettings = PLAIN) -> Applied:
    return apply_command(engine, command, at, settings)  # type: ignore[arg-type]


def published(engine: Engine) -> list[tuple[str, str, Envelope]]:
    with Session(engine) as session:
        rows = session.exec(select(OutboxRow).order_by(col(OutboxRow.id))).all()
        return [(r.topic, r.key, adapter_for(r.topic).validate_json(r.payload)) for r in rows]


def events(engine: Engine) -> list[Envelope]:
    return [event for topic, _, event in published(engine) if topic == HANDOFF_EVENTS]


def tickets(engine: Engine, tenant_id: uuid.UUID, conversation_id: str = "conv-1") -> list[Ticket]:
    with session_scope(engine) as session:
        return HandoffStore(session).tickets(tenant_id, conversation_id)


def mode_of(engine: Engine, tenant_id: uuid.UUID, conversation_id: str = "conv-1") -> ConversationMode:
    with session_scope(engine) as session:
        return HandoffStore(session).mode(tenant_id, conversation_id)


def staff_rows(engine: Engine) -> list[HandoffStaffRow]:
    with Session(engine) as session:
        return list(session.exec(select(HandoffStaffRow).order_by(col(HandoffStaffRow.staff_id))))


def open_with_ana(engine: Engine, tenant: uuid.UUID) -> Ticket:
    apply(engine, availability(tenant, "staff-ana"))
    apply(engine, request_cmd(tenant))
    [ticket] = tickets(engine, tenant)
    assert ticket.assigned_to == "staff-ana"
    return ticket


def rejected(engine: Engine) -> HandoffRejected:
    last = events(engine)[-1]
    assert isinstance(last, HandoffRejected)
    return last


def test_request_opens_a_ticket_puts_the_conversation_in_human_mode_and_queues_opened(engine: Engine) -> None:
    tenant = uuid.uuid4()
    command = request_cmd(tenant, note="wants a person")
    assert apply(engine, command).mode is ConversationMode.HUMAN
    [ticket] = tickets(engine, tenant)
    assert ticket.status is TicketStatus.OPEN and ticket.opened_at == AT and ticket.notes == ("wants a person",)
    assert ticket.first_response_due_at == AT + timedelta(seconds=900)
    (topic, key, event), (_, _, escalated) = published(engine)
    assert (topic, key) == (HANDOFF_EVENTS, "conv-1")
    assert isinstance(event, HandoffOpened)
    assert event.ticket_id == ticket.id and event.note == "wants a person"
    assert event.event_id == derived_id(command.event_id, "opened")
    assert (event.tenant_id, event.correlation_id) == (tenant, command.correlation_id)
    assert (event.causation_id, event.producer) == (command.event_id, "handoff")
    # Nobody is on the team yet: the owner hears about it at once.
    assert isinstance(escalated, HandoffEscalated) and escalated.reason is EscalationReason.NO_STAFF_AVAILABLE


def test_the_deadline_counts_only_the_tenants_business_hours(engine: Engine) -> None:
    tenant = uuid.uuid4()
    weekdays = HandoffSettings(business_hours=tuple((d, "09:00", "17:00") for d in range(5)), timezone="UTC")
    apply(engine, request_cmd(tenant), at=datetime(2026, 1, 2, 16, 55, tzinfo=UTC), settings=weekdays)
    [ticket] = tickets(engine, tenant)
    assert ticket.first_response_due_at == datetime(2026, 1, 5, 9, 10, tzinfo=UTC)


def test_a_new_ticket_goes_to_the_available_person_with_the_fewest_open_tickets_in_turn(engine: Engine) -> None:
    tenant = uuid.uuid4()
    for staff, available in (("staff-ana", True), ("staff-bo", True), ("staff-cy", False)):
        apply(engine, availability(tenant, staff, available))
    for n in range(4):
        apply(engine, request_cmd(tenant, f"conv-{n}"), at=AT + timedelta(seconds=n))
    owners = [tickets(engine, tenant, f"conv-{n}")[0].assigned_to for n in range(4)]
    assert owners == ["staff-ana", "staff-bo", "staff-ana", "staff-bo"]
    assigned = [e for e in events(engine) if isinstance(e, HandoffAssigned)]
    assert [e.staff_id for e in assigned] == owners


def test_second_request_keeps_one_open_ticket_and_publishes_nothing_new(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    before = len(published(engine))
    apply(engine, request_cmd(tenant, note="still waiting"))
    [ticket] = tickets(engine, tenant)
    assert ticket.notes == ("customer_asked: still waiting",)
    assert len(published(engine)) == before


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


def test_reply_to_a_conversation_handoff_never_saw_is_rejected_and_writes_nothing_else(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, availability(tenant, "staff-ana"))
    command = reply_cmd(tenant)
    applied = apply(engine, command)
    assert applied.refused is not None and applied.mode is ConversationMode.AI
    [(topic, key, event)] = published(engine)
    assert (topic, key) == (HANDOFF_EVENTS, "conv-1")
    assert isinstance(event, HandoffRejected)
    assert (event.command_id, event.reason) == (command.event_id, HandoffRejectionReason.UNKNOWN_CONVERSATION)
    assert event.event_id == derived_id(command.event_id, "rejected")
    assert tickets(engine, tenant) == []


def test_reply_queues_a_human_outbound_message_and_records_it_in_the_inbox(engine: Engine) -> None:
    tenant = uuid.uuid4()
    open_with_ana(engine, tenant)
    command = reply_cmd(tenant)
    assert apply(engine, command, at=AT + timedelta(minutes=2)).mode is ConversationMode.HUMAN
    (_, _, replied), (topic, key, outbound) = published(engine)[-2:]
    assert isinstance(replied, HandoffReplied) and replied.staff_id == "staff-ana"
    assert (topic, key) == (CHANNEL_OUTBOUND, "conv-1")
    assert isinstance(outbound, OutboundMessage)
    assert (outbound.author, outbound.text, outbound.channel) == (Author.HUMAN, "Hi!", Channel.INSTAGRAM)
    assert (outbound.channel_account_id, outbound.customer_id) == ("ig-1", "igsid-1")
    assert outbound.event_id == derived_id(command.event_id, "outbound")
    with Session(engine) as session:
        [row] = session.exec(select(InboxMessageRow).where(InboxMessageRow.tenant_id == tenant)).all()
    assert (row.event_id, row.author, row.text) == (outbound.event_id, "human", "Hi!")
    [ticket] = tickets(engine, tenant)
    assert ticket.first_replied_at == AT + timedelta(minutes=2)


@pytest.mark.parametrize(
    ("actor", "reason"),
    [
        (Actor(kind=ActorKind.STAFF, id="staff-bo"), HandoffRejectionReason.NOT_ASSIGNED),
        (Actor(kind=ActorKind.STAFF, id="staff-zed"), HandoffRejectionReason.UNKNOWN_STAFF),
        (OWNER, HandoffRejectionReason.NOT_ASSIGNED),
        (Actor(kind=ActorKind.AI), HandoffRejectionReason.NOT_PERMITTED),
    ],
    ids=["teammate-not-assigned", "not-on-the-team", "owner-without-taking-over", "ai"],
)
def test_a_reply_from_anyone_but_the_assignee_is_rejected_and_nothing_is_sent(
    engine: Engine, actor: Actor, reason: HandoffRejectionReason
) -> None:
    tenant = uuid.uuid4()
    ticket = open_with_ana(engine, tenant)
    apply(engine, availability(tenant, "staff-bo", available=False))
    apply(engine, reply_cmd(tenant, actor=actor))
    assert rejected(engine).reason is reason
    assert not any(topic == CHANNEL_OUTBOUND for topic, _, _ in published(engine))
    assert tickets(engine, tenant) == [ticket]


def test_the_owner_takes_over_and_then_replies(engine: Engine) -> None:
    tenant = uuid.uuid4()
    open_with_ana(engine, tenant)
    apply(engine, assign_cmd(tenant, "owner-olga"))
    apply(engine, reply_cmd(tenant, actor=OWNER))
    assert any(topic == CHANNEL_OUTBOUND for topic, _, _ in published(engine))


def test_resolve_closes_the_ticket_and_returns_the_conversation_to_ai(engine: Engine) -> None:
    tenant = uuid.uuid4()
    open_with_ana(engine, tenant)
    assert apply(engine, resolve_cmd(tenant)).mode is ConversationMode.AI
    assert mode_of(engine, tenant) is ConversationMode.AI
    [ticket] = tickets(engine, tenant)
    assert ticket.status is TicketStatus.RESOLVED and ticket.resolved_at == AT
    assert isinstance(events(engine)[-1], HandoffResolved)
    apply(engine, reply_cmd(tenant))
    assert rejected(engine).reason is HandoffRejectionReason.TICKET_CLOSED
    apply(engine, resolve_cmd(tenant))
    assert rejected(engine).reason is HandoffRejectionReason.TICKET_CLOSED
    assert tickets(engine, tenant) == [ticket]


def test_a_request_after_resolve_opens_a_new_ticket(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, request_cmd(tenant))
    apply(engine, resolve_cmd(tenant, actor=OWNER))
    apply(engine, request_cmd(tenant))
    assert [t.status for t in tickets(engine, tenant)] == [TicketStatus.RESOLVED, TicketStatus.OPEN]
    assert mode_of(engine, tenant) is ConversationMode.HUMAN


def test_a_duplicate_command_does_nothing_twice(engine: Engine) -> None:
    tenant = uuid.uuid4()
    apply(engine, availability(tenant, "staff-ana"))
    request, reply, stray = request_cmd(tenant, note="once"), reply_cmd(tenant), resolve_cmd(tenant, "conv-9")
    for command in (request, request, reply, reply, stray, stray):
        apply(engine, command)
    [ticket] = tickets(engine, tenant)
    assert ticket.notes == ("once",)
    kinds = [type(event).__name__ for _, _, event in published(engine)]
    expected = ["HandoffOpened", "HandoffAssigned", "HandoffReplied", "OutboundMessage", "HandoffRejected"]
    assert kinds == expected


def test_a_duplicate_reports_the_current_mode_so_the_mirror_can_be_repaired(engine: Engine) -> None:
    tenant = uuid.uuid4()
    request = request_cmd(tenant)
    apply(engine, request)
    apply(engine, resolve_cmd(tenant, actor=OWNER))
    assert apply(engine, request).mode is ConversationMode.AI


def test_a_command_for_another_tenants_conversation_does_not_touch_this_tenants_ticket(engine: Engine) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    open_with_ana(engine, ours)
    apply(engine, availability(theirs, "staff-bo"))
    for command in (
        reply_cmd(theirs, actor=Actor(kind=ActorKind.STAFF, id="staff-bo")),
        resolve_cmd(theirs, actor=Actor(kind=ActorKind.OWNER, id="owner-2")),
        assign_cmd(theirs, "staff-bo", actor=Actor(kind=ActorKind.OWNER, id="owner-2")),
    ):
        apply(engine, command)
        assert rejected(engine).reason is HandoffRejectionReason.UNKNOWN_CONVERSATION
    # Their own staff cannot touch our ticket either: ours is not on their team.
    apply(engine, resolve_cmd(ours, actor=Actor(kind=ActorKind.STAFF, id="staff-bo")))
    assert rejected(engine).reason is HandoffRejectionReason.UNKNOWN_STAFF
    [our_ticket] = tickets(engine, ours)
    assert our_ticket.status is TicketStatus.OPEN and our_ticket.notes == ()
    assert mode_of(engine, ours) is ConversationMode.HUMAN
    assert tickets(engine, theirs) == []


def test_availability_for_another_tenants_staff_is_rejected_and_the_roster_is_unchanged(engine: Engine) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    apply(engine, availability(ours, "staff-ana"))
    before = staff_rows(engine)
    command = availability(theirs, "staff-ana", False, actor=Actor(kind=ActorKind.OWNER, id="owner-2"))
    apply(engine, command)
    event = rejected(engine)
    assert (event.reason, event.command_id, event.conversation_id) == (
        HandoffRejectionReason.UNKNOWN_STAFF,
        command.event_id,
        "",
    )
    assert published(engine)[-1][1] == "staff-ana"  # keyed by the staff id it named
    assert [(r.tenant_id, r.staff_id, r.available) for r in staff_rows(engine)] == [
        (r.tenant_id, r.staff_id, r.available) for r in before
    ]


def test_notifications_are_queued_with_the_events_only_for_a_tenant_with_a_webhook(engine: Engine) -> None:
    quiet, loud = uuid.uuid4(), uuid.uuid4()
    apply(engine, request_cmd(quiet))
    apply(engine, request_cmd(loud), settings=HandoffSettings(notify_url="https://hooks.example.com/x"))
    apply(engine, reply_cmd(loud))  # refused: no notification for a rejection
    with Session(engine) as session:
        rows = session.exec(select(HandoffNotificationRow).order_by(col(HandoffNotificationRow.id))).all()
    assert {row.tenant_id for row in rows} == {loud}
    assert [row.event_type for row in rows] == ["opened", "escalated"]


def test_team_availability_shows_only_this_tenants_people_with_their_load(engine: Engine) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    open_with_ana(engine, ours)
    apply(engine, availability(ours, "staff-bo", available=False))
    apply(engine, availability(theirs, "staff-cy"))
    team = team_availability(engine, ours)
    assert [(s.staff_id, s.available, s.open_tickets) for s in team] == [("staff-ana", True, 1), ("staff-bo", False, 0)]
