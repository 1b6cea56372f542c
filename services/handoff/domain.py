"""Handoff rules: one ticket per conversation, who may assign, reply and resolve, and the mode that follows."""

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from schemas.envelope import ActorKind, Channel
from schemas.handoff import (
    AssignHandoff,
    HandoffReason,
    HandoffRejectionReason,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
)
from services.handoff.roster import (
    EMPTY,
    ActorNotAllowed,
    CommandRefused,
    Roster,
    UnknownStaff,
    pick_staff,
    require_person_of_tenant,
)

Command = RequestHandoff | AssignHandoff | ReplyHandoff | ResolveHandoff

# A looping agent may re-request a handoff on every message; keep the newest notes, not all of them.
MAX_NOTES = 50

# The customer speaks through the channel, never through commands.
MAY_REQUEST = frozenset({ActorKind.AI, ActorKind.OWNER, ActorKind.STAFF, ActorKind.SYSTEM})
# Replies go out as author=human, so only people may send them; the AI must never speak as a person.
MAY_ASSIGN = frozenset({ActorKind.OWNER, ActorKind.STAFF, ActorKind.SYSTEM})
MAY_REPLY = frozenset({ActorKind.OWNER, ActorKind.STAFF})
# The AI may ask for a person but may not take the conversation back by itself.
MAY_RESOLVE = frozenset({ActorKind.OWNER, ActorKind.STAFF, ActorKind.SYSTEM})


class ConversationMode(StrEnum):
    AI = "ai"
    HUMAN = "human"


class TicketStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Ticket:
    id: str
    tenant_id: UUID
    conversation_id: str
    channel: Channel
    channel_account_id: str
    customer_id: str
    status: TicketStatus
    reason: HandoffReason
    notes: tuple[str, ...]
    assigned_to: str | None
    opened_at: datetime
    resolved_at: datetime | None = None
    correlation_id: UUID | None = None
    # The first-response deadline in business time, set when the ticket opens (sla.business_deadline).
    first_response_due_at: datetime | None = None
    first_replied_at: datetime | None = None
    # Each escalation is sent once per ticket: these mark that it was.
    sla_breached_at: datetime | None = None
    no_staff_escalated_at: datetime | None = None
    # The last request that joined the ticket while open (a refund to make, a refused send): activity the quiet
    # return must count, or a ticket quiet before it would go back to the AI with that need unmet.
    last_requested_at: datetime | None = None


@dataclass(frozen=True)
class Opened:
    """A new ticket; `ticket.assigned_to` is set when someone was available to take it at once."""

    ticket: Ticket

    @property
    def nobody_available(self) -> bool:
        return self.ticket.no_staff_escalated_at is not None


@dataclass(frozen=True)
class Noted:
    """A request while a ticket is open: its reason and note join the open ticket; nothing is emitted."""

    ticket: Ticket


@dataclass(frozen=True)
class Assigned:
    ticket: Ticket
    staff_id: str


@dataclass(frozen=True)
class Unchanged:
    """An assign that changes nothing: same person, or auto-assign with nobody available."""

    ticket: Ticket


@dataclass(frozen=True)
class Replied:
    ticket: Ticket
    staff_id: str
    text: str
    # Set on the ticket's first human reply: how long the customer waited for a person.
    waited_seconds: float | None = None


@dataclass(frozen=True)
class Resolved:
    ticket: Ticket
    note: str


Outcome = Opened | Noted | Assigned | Unchanged | Replied | Resolved


class NoOpenTicket(CommandRefused):
    reason = HandoffRejectionReason.NO_OPEN_TICKET


class TicketClosed(NoOpenTicket):
    reason = HandoffRejectionReason.TICKET_CLOSED


class UnknownConversation(NoOpenTicket):
    reason = HandoffRejectionReason.UNKNOWN_CONVERSATION


class TicketMismatch(CommandRefused):
    reason = HandoffRejectionReason.UNKNOWN_CONVERSATION


class NotAssigned(CommandRefused):
    reason = HandoffRejectionReason.NOT_ASSIGNED


@dataclass(frozen=True)
class Facts:
    """What the store knows around one command: the tenant's roster and whether the conversation exists."""

    roster: Roster = EMPTY
    conversation_known: bool = True


def mode_after(outcome: Outcome) -> ConversationMode:
    """An open ticket keeps the conversation with people; resolving hands it back to the AI."""
    return ConversationMode.HUMAN if outcome.ticket.status is TicketStatus.OPEN else ConversationMode.AI


def _with_note(notes: tuple[str, ...], note: str) -> tuple[str, ...]:
    return (*notes, note)[-MAX_NOTES:] if note else notes


def _require_open(ticket: Ticket | None, command: Command, facts: Facts) -> Ticket:
    if ticket is not None and (
        ticket.tenant_id != command.tenant_id or ticket.conversation_id != command.conversation_id
    ):
        # The store looks tickets up by tenant already; this guards against a caller that does not.
        raise TicketMismatch(f"ticket {ticket.id} belongs to another tenant or conversation")
    if ticket is None:
        if not facts.conversation_known:
            raise UnknownConversation(f"no conversation {command.conversation_id} for this tenant")
        raise NoOpenTicket(f"no open handoff for conversation {command.conversation_id}")
    if ticket.status is not TicketStatus.OPEN:
        raise TicketClosed(f"handoff {ticket.id} is already resolved")
    return ticket


def _require_actor(command: Command, allowed: frozenset[ActorKind]) -> None:
    if command.actor.kind not in allowed:
        raise ActorNotAllowed(f"{command.actor.kind} may not {command.type} a handoff")


def _require_person(command: Command, facts: Facts) -> None:
    if command.actor.kind in (ActorKind.OWNER, ActorKind.STAFF):
        require_person_of_tenant(command.actor.kind, command.actor.id, facts.roster)


def request(
    ticket: Ticket | None, command: RequestHandoff, *, ticket_id: str, now: datetime, facts: Facts
) -> Opened | Noted:
    _require_actor(command, MAY_REQUEST)
    _require_person(command, facts)
    if command.actor.kind in (ActorKind.OWNER, ActorKind.STAFF) and not facts.conversation_known:
        # People pick conversations from the inbox; one handoff has never seen is another tenant's or made up.
        raise UnknownConversation(f"no conversation {command.conversation_id} for this tenant")
    if ticket is not None and ticket.status is TicketStatus.OPEN:
        open_ticket = _require_open(ticket, command, facts)
        extra = f"{command.reason}: {command.note}" if command.note else str(command.reason)
        return Noted(replace(open_ticket, notes=_with_note(open_ticket.notes, extra), last_requested_at=now))
    staff_id = pick_staff(list(facts.roster.members.values()))
    return Opened(
        Ticket(
            id=ticket_id,
            tenant_id=command.tenant_id,
            conversation_id=command.conversation_id,
            channel=command.channel,
            channel_account_id=command.channel_account_id,
            customer_id=command.customer_id,
            status=TicketStatus.OPEN,
            reason=command.reason,
            notes=_with_note((), command.note),
            assigned_to=staff_id,
            opened_at=now,
            correlation_id=command.correlation_id,
            no_staff_escalated_at=now if staff_id is None else None,
        )
    )


def assign(ticket: Ticket | None, command: AssignHandoff, *, facts: Facts) -> Assigned | Unchanged:
    """Assign to the named person of the tenant; with none named, an unassigned ticket gets the least loaded."""
    _require_actor(command, MAY_ASSIGN)
    _require_person(command, facts)
    open_ticket = _require_open(ticket, command, facts)
    staff_id = command.staff_id
    if not staff_id:
        picked = pick_staff(list(facts.roster.members.values()))
        if open_ticket.assigned_to is not None or picked is None:
            return Unchanged(open_ticket)
        staff_id = picked
    elif not facts.roster.is_member(staff_id) and not _owner_taking_over(command):
        raise UnknownStaff(f"staff {staff_id!r} is not on this tenant's team")
    if staff_id == open_ticket.assigned_to:
        return Unchanged(open_ticket)
    return Assigned(replace(open_ticket, assigned_to=staff_id), staff_id)


def _owner_taking_over(command: AssignHandoff) -> bool:
    return command.actor.kind is ActorKind.OWNER and command.staff_id == command.actor.id


def reply(ticket: Ticket | None, command: ReplyHandoff, *, now: datetime, facts: Facts) -> Replied:
    """Only the assigned person speaks for the business; the owner takes over by assigning themselves first."""
    _require_actor(command, MAY_REPLY)
    _require_person(command, facts)
    open_ticket = _require_open(ticket, command, facts)
    if not command.actor.id or command.actor.id != open_ticket.assigned_to:
        raise NotAssigned(f"{command.actor.id!r} is not assigned to handoff {open_ticket.id}")
    if open_ticket.first_replied_at is not None:
        return Replied(open_ticket, command.actor.id, command.text)
    answered = replace(open_ticket, first_replied_at=now)
    waited = max(0.0, (now - open_ticket.opened_at).total_seconds())
    return Replied(answered, command.actor.id, command.text, waited)


def resolve(ticket: Ticket | None, command: ResolveHandoff, *, now: datetime, facts: Facts) -> Resolved:
    _require_actor(command, MAY_RESOLVE)
    _require_person(command, facts)
    open_ticket = _require_open(ticket, command, facts)
    if command.ticket_id is not None and command.ticket_id != open_ticket.id:
        raise TicketClosed(f"handoff {command.ticket_id} is already resolved; {open_ticket.id} is open")
    closed = replace(
        open_ticket,
        status=TicketStatus.RESOLVED,
        resolved_at=now,
        notes=_with_note(open_ticket.notes, command.note),
    )
    return Resolved(closed, command.note)


def decide(
    ticket: Ticket | None,
    command: Command,
    *,
    ticket_id: str,
    now: datetime,
    facts: Facts | None = None,
) -> Outcome:
    """Apply one command to the conversation's open ticket (else its latest, or None); raises CommandRefused."""
    facts = facts or Facts()
    match command:
        case RequestHandoff():
            return request(ticket, command, ticket_id=ticket_id, now=now, facts=facts)
        case AssignHandoff():
            return assign(ticket, command, facts=facts)
        case ReplyHandoff():
            return reply(ticket, command, now=now, facts=facts)
        case ResolveHandoff():
            return resolve(ticket, command, now=now, facts=facts)
