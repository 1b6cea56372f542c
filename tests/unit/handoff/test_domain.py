"""Handoff rules, as plain functions: no database, no broker, no event loop."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import (
    AssignHandoff,
    HandoffReason,
    HandoffRejectionReason,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
)
from services.handoff.domain import (
    MAX_NOTES,
    Assigned,
    Command,
    ConversationMode,
    Facts,
    NoOpenTicket,
    NotAssigned,
    Noted,
    Opened,
    Outcome,
    Replied,
    Resolved,
    Ticket,
    TicketClosed,
    TicketMismatch,
    TicketStatus,
    Unchanged,
    UnknownConversation,
    mode_after,
)
from services.handoff.domain import (
    decide as decide_with,
)
from services.handoff.roster import ActorNotAllowed, Roster, StaffMember, UnknownStaff

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
CONVERSATION = "conv-1"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
AI = Actor(kind=ActorKind.AI)
STAFF = Actor(kind=ActorKind.STAFF, id="staff-ana")
OWNER = Actor(kind=ActorKind.OWNER, id="owner-olga")


def team(*members: StaffMember, foreign: frozenset[str] = frozenset()) -> Facts:
    return Facts(roster=Roster(members={m.staff_id: m for m in members}, foreign=foreign))


# Ana and Bo are on the team; Ana is busy with nothing yet and not taking tickets, so Bo gets new ones.
FACTS = team(StaffMember("staff-ana", available=False), StaffMember("staff-bo", available=True))


def decide(ticket: Ticket | None, command: Command, *, ticket_id: str, now: datetime, facts: Facts = FACTS) -> Outcome:
    return decide_with(ticket, command, ticket_id=ticket_id, now=now, facts=facts)


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


def opened(note: str = "", assigned_to: str | None = None) -> Ticket:
    nobody = team(StaffMember("staff-ana", available=False), StaffMember("staff-bo", available=False))
    ticket = decide(None, request_cmd(note=note), ticket_id="t-1", now=AT, facts=nobody).ticket
    return ticket if assigned_to is None else decide(ticket, assign_cmd(assigned_to), ticket_id="x", now=AT).ticket


def test_request_opens_a_ticket_and_puts_the_conversation_in_human_mode() -> None:
    outcome = decide(None, request_cmd(note="wants a person"), ticket_id="t-1", now=AT)
    assert isinstance(outcome, Opened)
    assert outcome.ticket.status is TicketStatus.OPEN
    assert outcome.ticket.notes == ("wants a person",)
    assert outcome.ticket.correlation_id is not None
    assert mode_after(outcome) is ConversationMode.HUMAN


def test_a_new_ticket_goes_at_once_to_the_least_loaded_available_person() -> None:
    facts = team(
        StaffMember("staff-ana", available=True, open_tickets=2),
        StaffMember("staff-bo", available=True, open_tickets=1),
        StaffMember("staff-cy", available=False, open_tickets=0),
    )
    outcome = decide(None, request_cmd(), ticket_id="t-1", now=AT, facts=facts)
    assert isinstance(outcome, Opened)
    assert outcome.ticket.assigned_to == "staff-bo"
    assert not outcome.nobody_available


def test_a_new_ticket_with_nobody_available_is_escalated_once_and_left_unassigned() -> None:
    outcome = decide(None, request_cmd(), ticket_id="t-1", now=AT, facts=team(StaffMember("staff-ana", False)))
    assert isinstance(outcome, Opened)
    assert outcome.ticket.assigned_to is None
    assert outcome.nobody_available and outcome.ticket.no_staff_escalated_at == AT


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


def test_assign_names_a_person_of_the_team_even_if_they_are_not_taking_tickets() -> None:
    outcome = decide(opened(), assign_cmd("staff-ana"), ticket_id="x", now=AT)
    assert isinstance(outcome, Assigned)
    assert outcome.staff_id == "staff-ana"
    assert outcome.ticket.assigned_to == "staff-ana"


def test_assign_to_someone_not_on_the_team_is_refused() -> None:
    with pytest.raises(UnknownStaff) as refused:
        decide(opened(), assign_cmd("staff-zed"), ticket_id="x", now=AT)
    assert refused.value.reason is HandoffRejectionReason.UNKNOWN_STAFF


def test_assign_to_another_tenants_staff_is_refused() -> None:
    facts = team(StaffMember("staff-ana", available=True), foreign=frozenset({"staff-zed"}))
    with pytest.raises(UnknownStaff):
        decide(opened(), assign_cmd("staff-zed", actor=OWNER), ticket_id="x", now=AT, facts=facts)


def test_the_owner_takes_over_by_assigning_themselves() -> None:
    outcome = decide(opened(assigned_to="staff-bo"), assign_cmd("owner-olga", actor=OWNER), ticket_id="x", now=AT)
    assert isinstance(outcome, Assigned) and outcome.ticket.assigned_to == "owner-olga"


def test_auto_assign_picks_the_least_loaded_then_whoever_waited_longest() -> None:
    earlier, later = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    facts = team(
        StaffMember("staff-ana", available=True, open_tickets=1, last_assigned_at=later),
        StaffMember("staff-bo", available=True, open_tickets=1, last_assigned_at=earlier),
        StaffMember("staff-cy", available=True, open_tickets=3),
    )
    system = Actor(kind=ActorKind.SYSTEM)
    outcome = decide(opened(), assign_cmd(actor=system), ticket_id="x", now=AT, facts=facts)
    assert isinstance(outcome, Assigned) and outcome.staff_id == "staff-bo"


def test_auto_assign_with_nobody_available_leaves_the_ticket_unassigned() -> None:
    nobody = team(StaffMember("staff-ana", available=False))
    outcome = decide(opened(), assign_cmd(actor=Actor(kind=ActorKind.SYSTEM)), ticket_id="x", now=AT, facts=nobody)
    assert isinstance(outcome, Unchanged)
    assert outcome.ticket.assigned_to is None


def test_auto_assign_keeps_an_existing_assignee() -> None:
    outcome = decide(opened(assigned_to="staff-ana"), assign_cmd(), ticket_id="x", now=AT)
    assert isinstance(outcome, Unchanged)
    assert outcome.ticket.assigned_to == "staff-ana"


def test_assigning_the_same_person_again_changes_nothing() -> None:
    ticket = decide(opened(), assign_cmd("staff-bo"), ticket_id="x", now=AT).ticket
    assert isinstance(decide(ticket, assign_cmd("staff-bo"), ticket_id="x", now=AT), Unchanged)


def test_reply_carries_the_staff_id_and_text_and_keeps_human_mode() -> None:
    later = AT + timedelta(minutes=3)
    outcome = decide(opened(assigned_to="staff-ana"), reply_cmd(text="On my way"), ticket_id="x", now=later)
    assert isinstance(outcome, Replied)
    assert (outcome.staff_id, outcome.text) == ("staff-ana", "On my way")
    assert mode_after(outcome) is ConversationMode.HUMAN
    assert (outcome.ticket.first_replied_at, outcome.waited_seconds) == (later, 180.0)
    again = decide(outcome.ticket, reply_cmd(text="Still here"), ticket_id="x", now=later + timedelta(minutes=1))
    assert isinstance(again, Replied)
    assert (again.ticket.first_replied_at, again.waited_seconds) == (later, None)


@pytest.mark.parametrize(
    ("assigned_to", "actor"),
    [(None, STAFF), ("staff-bo", STAFF), ("staff-bo", OWNER)],
    ids=["unassigned", "someone-else", "owner-without-taking-over"],
)
def test_only_the_assigned_person_may_reply(assigned_to: str | None, actor: Actor) -> None:
    with pytest.raises(NotAssigned) as refused:
        decide(opened(assigned_to=assigned_to), reply_cmd(actor=actor), ticket_id="x", now=AT)
    assert refused.value.reason is HandoffRejectionReason.NOT_ASSIGNED


def test_a_reply_from_staff_not_on_the_team_is_refused_even_if_named_on_the_ticket() -> None:
    ticket = opened(assigned_to="staff-ana")
    outsider = Actor(kind=ActorKind.STAFF, id="staff-ana")
    with pytest.raises(UnknownStaff):
        decide(ticket, reply_cmd(actor=outsider), ticket_id="x", now=AT, facts=team(foreign=frozenset({"staff-ana"})))


def test_reply_is_refused_without_an_open_ticket() -> None:
    with pytest.raises(NoOpenTicket):
        decide(None, reply_cmd(), ticket_id="x", now=AT)


def test_reply_is_refused_after_resolve() -> None:
    closed = decide(opened(assigned_to="staff-ana"), resolve_cmd(), ticket_id="x", now=AT).ticket
    with pytest.raises(TicketClosed) as refused:
        decide(closed, reply_cmd(), ticket_id="x", now=AT)
    assert refused.value.reason is HandoffRejectionReason.TICKET_CLOSED


def test_resolving_a_closed_ticket_is_refused_as_closed() -> None:
    closed = decide(opened(), resolve_cmd(), ticket_id="x", now=AT).ticket
    with pytest.raises(TicketClosed):
        decide(closed, resolve_cmd(note="again"), ticket_id="x", now=AT)


def test_a_command_for_a_conversation_handoff_never_saw_is_refused_as_unknown() -> None:
    unknown = Facts(roster=FACTS.roster, conversation_known=False)
    for command in (reply_cmd(), resolve_cmd(), assign_cmd("staff-bo")):
        with pytest.raises(UnknownConversation) as refused:
            decide(None, command, ticket_id="x", now=AT, facts=unknown)
        assert refused.value.reason is HandoffRejectionReason.UNKNOWN_CONVERSATION


def test_a_person_may_not_open_a_handoff_for_a_conversation_handoff_never_saw() -> None:
    command = RequestHandoff.model_validate({**request_cmd().model_dump(), "actor": OWNER})
    with pytest.raises(UnknownConversation):
        decide(None, command, ticket_id="t-1", now=AT, facts=Facts(roster=FACTS.roster, conversation_known=False))


def test_the_customer_cannot_open_a_handoff_by_command() -> None:
    command = RequestHandoff.model_validate({**request_cmd().model_dump(), "actor": Actor(kind=ActorKind.CUSTOMER)})
    with pytest.raises(ActorNotAllowed):
        decide(None, command, ticket_id="t-1", now=AT)


def test_resolve_closes_the_ticket_and_returns_the_conversation_to_ai() -> None:
    outcome = decide(opened(), resolve_cmd(note="refund done"), ticket_id="x", now=AT)
    assert isinstance(outcome, Resolved)
    assert outcome.ticket.status is TicketStatus.RESOLVED
    assert outcome.ticket.resolved_at == AT
    assert outcome.ticket.notes[-1] == "refund done"
    assert mode_after(outcome) is ConversationMode.AI


def test_a_resolve_for_one_ticket_does_not_close_another_opened_since() -> None:
    """The sweep found ticket t-0 quiet; by its turn t-0 was resolved and t-1 opened (a refund request)."""
    for_the_old_one = ResolveHandoff.model_validate({**resolve_cmd().model_dump(), "ticket_id": "t-0"})
    with pytest.raises(TicketClosed):
        decide(opened(), for_the_old_one, ticket_id="x", now=AT)
    for_this_one = ResolveHandoff.model_validate({**resolve_cmd().model_dump(), "ticket_id": "t-1"})
    assert isinstance(decide(opened(), for_this_one, ticket_id="x", now=AT), Resolved)


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
