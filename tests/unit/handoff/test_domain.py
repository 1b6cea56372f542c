"""Handoff rules, as plain functions: no database, no broker, no event loop."""

import uuid
from datetime import UTC, datetime

import pytest

from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import (
    AssignHandoff,
    HandoffReason,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
)
from services.handoff.domain import (
    MAX_NOTES,
    ActorNotAllowed,
    Assigned,
    ConversationMode,
    NoOpenTicket,
    Noted,
    Opened,
    Outcome,
    Replied,
    Resolved,
    Ticket,
    TicketMismatch,
    TicketStatus,
    Unchanged,
    decide,
    mode_after,
)

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
CONVERSATION = "conv-1"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
AI = Actor(kind=ActorKind.AI)
STAFF = Actor(kind=ActorKind.STAFF, id="staff-ana")


def _envelope(tenant_id: uuid.UUID = TENANT) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "correlation_id": uuid.uuid4(),
        "occurred_at": AT,
        "producer": "test",
        "conversation_id": CONVERSATION,
    }


def request_cmd(*, note: str = "", reason: HandoffReason = HandoffReason.CUSTOMER_ASKED) -> RequestHandoff:
    return RequestHandoff.model_validate(
        {
            **_envelope(),
            "actor": AI,
            "reason": reason,
            "channel": Channel.WHATSAPP,
            "channel_account_id": "acct-1",
            "customer_id": "cust-1",
            "note": note,
        }
    )


def assign_cmd(staff_id: str = "", actor: Actor = STAFF) -> AssignHandoff:
    return AssignHandoff.model_validate({**_envelope(), "actor": actor, "staff_id": staff_id})


def reply_cmd(actor: Actor = STAFF, text: str = "Hi, Ana here") -> ReplyHandoff:
    return ReplyHandoff.model_validate({**_envelope(), "actor": actor, "text": text})


def resolve_cmd(actor: Actor = STAFF, note: str = "") -> ResolveHandoff:
    return ResolveHandoff.model_validate({**_envelope(), "actor": actor, "note": note})


def opened(note: str = "") -> Ticket:
    return decide(None, request_cmd(note=note), ticket_id="t-1", now=AT).ticket


def test_request_opens_a_ticket_and_puts_the_conversation_in_human_mode() -> None:
    outcome = decide(None, request_cmd(note="wants a person"), ticket_id="t-1", now=AT)
    assert isinstance(outcome, Opened)
    assert outcome.ticket.status is TicketStatus.OPEN
    assert outcome.ticket.notes == ("wants a person",)
    assert outcome.ticket.assigned_to is None
    assert mode_after(outcome) is ConversationMode.HUMAN


def test_second_request_adds_its_reason_to_the_open_ticket_instead_of_opening_another() -> None:
    ticket = opened(note="first")
    outcome = decide(
        ticket, request_cmd(note="angry", reason=HandoffReason.COMPLAINT_OR_REFUND), ticket_id="t-2", now=AT
    )
    assert isinstance(outcome, Noted)
    assert outcome.ticket.id == "t-1"
    assert outcome.ticket.reason is HandoffReason.CUSTOMER_ASKED
    assert outcome.ticket.notes == ("first", "complaint_or_refund: angry")


def test_request_after_resolve_opens_a_new_ticket() -> None:
    closed = decide(opened(), resolve_cmd(), ticket_id="unused", now=AT).ticket
    outcome = decide(closed, request_cmd(), ticket_id="t-2", now=AT)
    assert isinstance(outcome, Opened)
    assert outcome.ticket.id == "t-2"


def test_notes_keep_only_the_newest() -> None:
    ticket = opened()
    for n in range(MAX_NOTES + 5):
        ticket = decide(ticket, request_cmd(note=f"n{n}"), ticket_id="x", now=AT).ticket
    assert len(ticket.notes) == MAX_NOTES
    assert ticket.notes[-1] == f"customer_asked: n{MAX_NOTES + 4}"


def test_assign_names_the_staff_member() -> None:
    outcome = decide(opened(), assign_cmd("staff-bo"), ticket_id="x", now=AT, available_staff=["staff-ana"])
    assert isinstance(outcome, Assigned)
    assert outcome.staff_id == "staff-bo"
    assert outcome.ticket.assigned_to == "staff-bo"


def test_auto_assign_picks_the_first_available_staff() -> None:
    outcome = decide(opened(), assign_cmd(), ticket_id="x", now=AT, available_staff=["staff-ana", "staff-bo"])
    assert isinstance(outcome, Assigned)
    assert outcome.ticket.assigned_to == "staff-ana"


def test_auto_assign_with_nobody_available_leaves_the_ticket_unassigned() -> None:
    outcome = decide(opened(), assign_cmd(actor=Actor(kind=ActorKind.SYSTEM)), ticket_id="x", now=AT)
    assert isinstance(outcome, Unchanged)
    assert outcome.ticket.assigned_to is None


def test_auto_assign_keeps_an_existing_assignee() -> None:
    ticket = decide(opened(), assign_cmd("staff-bo"), ticket_id="x", now=AT).ticket
    outcome = decide(ticket, assign_cmd(), ticket_id="x", now=AT, available_staff=["staff-ana"])
    assert isinstance(outcome, Unchanged)
    assert outcome.ticket.assigned_to == "staff-bo"


def test_assigning_the_same_person_again_changes_nothing() -> None:
    ticket = decide(opened(), assign_cmd("staff-bo"), ticket_id="x", now=AT).ticket
    assert isinstance(decide(ticket, assign_cmd("staff-bo"), ticket_id="x", now=AT), Unchanged)


def test_reply_carries_the_staff_id_and_text_and_keeps_human_mode() -> None:
    outcome = decide(opened(), reply_cmd(text="On my way"), ticket_id="x", now=AT)
    assert isinstance(outcome, Replied)
    assert (outcome.staff_id, outcome.text) == ("staff-ana", "On my way")
    assert mode_after(outcome) is ConversationMode.HUMAN


def test_reply_is_refused_without_an_open_ticket() -> None:
    with pytest.raises(NoOpenTicket):
        decide(None, reply_cmd(), ticket_id="x", now=AT)


def test_reply_is_refused_after_resolve() -> None:
    closed = decide(opened(), resolve_cmd(), ticket_id="x", now=AT).ticket
    with pytest.raises(NoOpenTicket):
        decide(closed, reply_cmd(), ticket_id="x", now=AT)


def test_resolve_closes_the_ticket_and_returns_the_conversation_to_ai() -> None:
    outcome = decide(opened(), resolve_cmd(note="refund done"), ticket_id="x", now=AT)
    assert isinstance(outcome, Resolved)
    assert outcome.ticket.status is TicketStatus.RESOLVED
    assert outcome.ticket.resolved_at == AT
    assert outcome.ticket.notes[-1] == "refund done"
    assert mode_after(outcome) is ConversationMode.AI


def test_resolve_is_refused_without_an_open_ticket() -> None:
    with pytest.raises(NoOpenTicket):
        decide(None, resolve_cmd(), ticket_id="x", now=AT)


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        (assign_cmd("staff-bo", actor=AI), ActorKind.AI),
        (reply_cmd(actor=AI), ActorKind.AI),
        (reply_cmd(actor=Actor(kind=ActorKind.SYSTEM)), ActorKind.SYSTEM),
        (resolve_cmd(actor=AI), ActorKind.AI),
        (resolve_cmd(actor=Actor(kind=ActorKind.CUSTOMER)), ActorKind.CUSTOMER),
    ],
)
def test_only_people_and_the_system_may_act_on_a_ticket_and_only_people_may_reply(
    command: AssignHandoff | ReplyHandoff | ResolveHandoff, kind: ActorKind
) -> None:
    with pytest.raises(ActorNotAllowed, match=str(kind)):
        decide(opened(), command, ticket_id="x", now=AT)


def test_a_ticket_of_another_tenant_is_refused() -> None:
    foreign = ResolveHandoff.model_validate({**_envelope(uuid.uuid4()), "actor": STAFF})
    with pytest.raises(TicketMismatch):
        decide(opened(), foreign, ticket_id="x", now=AT)


def test_every_outcome_names_the_ticket_it_leaves_behind() -> None:
    outcomes: list[Outcome] = [
        decide(None, request_cmd(), ticket_id="t-1", now=AT),
        decide(opened(), request_cmd(), ticket_id="t-2", now=AT),
        decide(opened(), assign_cmd("staff-bo"), ticket_id="x", now=AT),
    ]
    assert {o.ticket.id for o in outcomes} == {"t-1"}
