"""Handoff rules: one ticket per conversation, who may assign, reply and resolve, and the mode that follows."""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from schemas.envelope import ActorKind, Channel
from schemas.handoff import (
    AssignHandoff,
    HandoffReason,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
)

Command = RequestHandoff | AssignHandoff | ReplyHandoff | ResolveHandoff

# A looping agent may re-request a handoff on every message; keep the newest notes, not all of them.
MAX_NOTES = 50

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


@dataclass(frozen=True)
class Opened:
    ticket: Ticket


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


@dataclass(frozen=True)
class Resolved:
    ticket: Ticket
    note: str


Outcome = Opened | Noted | Assigned | Unchanged | Replied | Resolved


class HandoffRejected(Exception):
    """A command that current state or the actor's permissions do not allow."""


class NoOpenTicket(HandoffRejected):
    pass


class ActorNotAllowed(HandoffRejected):
    pass


class TicketMismatch(HandoffRejected):
    pass


def mode_after(outcome: Outcome) -> ConversationMode:
    """An open ticket keeps the conversation with people; resolving hands it back to the AI."""
    return ConversationMode.HUMAN if outcome.ticket.status is TicketStatus.OPEN else ConversationMode.AI


def _with_note(notes: tuple[str, ...], note: str) -> tuple[str, ...]:
    return (*notes, note)[-MAX_NOTES:] if note else notes


def _require_open(ticket: Ticket | None, command: Command) -> Ticket:
    if ticket is None or ticket.status is not TicketStatus.OPEN:
        raise NoOpenTicket(f"no open handoff for conversation {command.conversation_id}")
    # The store looks tickets up by tenant already; this guards against a caller that does not.
    if ticket.tenant_id != command.tenant_id or ticket.conversation_id != command.conversation_id:
        raise TicketMismatch(f"ticket {ticket.id} belongs to another tenant or conversation")
    return ticket


def _require_actor(command: Command, allowed: frozenset[ActorKind]) -> None:
    if command.actor.kind not in allowed:
        raise ActorNotAllowed(f"{command.actor.kind} may not {command.type} a handoff")


def request(ticket: Ticket | None, command: RequestHandoff, *, ticket_id: str, now: datetime) -> Opened | Noted:
    if ticket is not None and ticket.status is TicketStatus.OPEN:
        open_ticket = _require_open(ticket, command)
        extra = f"{command.reason}: {command.note}" if command.note else str(command.reason)
        return Noted(replace(open_ticket, notes=_with_note(open_ticket.notes, extra)))
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
            assigned_to=None,
            opened_at=now,
        )
    )


def assign(ticket: Ticket | None, command: AssignHandoff, *, available_staff: Sequence[str]) -> Assigned | Unchanged:
    """Assign to the named staff id; with none named, an unassigned ticket gets the first available person."""
    _require_actor(command, MAY_ASSIGN)
    open_ticket = _require_open(ticket, command)
    staff_id = command.staff_id
    if not staff_id:
        if open_ticket.assigned_to is not None or not available_staff:
            return Unchanged(open_ticket)
        staff_id = available_staff[0]
    if staff_id == open_ticket.assigned_to:
        return Unchanged(open_ticket)
    return Assigned(replace(open_ticket, assigned_to=staff_id), staff_id)


def reply(ticket: Ticket | None, command: ReplyHandoff) -> Replied:
    _require_actor(command, MAY_REPLY)
    open_ticket = _require_open(ticket, command)
    return Replied(open_ticket, command.actor.id, command.text)


def resolve(ticket: Ticket | None, command: ResolveHandoff, *, now: datetime) -> Resolved:
    _require_actor(command, MAY_RESOLVE)
    open_ticket = _require_open(ticket, command)
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
    available_staff: Sequence[str] = (),
) -> Outcome:
    """Apply one command to the conversation's open ticket (or None); raises HandoffRejected."""
    match command:
        case RequestHandoff():
            return request(ticket, command, ticket_id=ticket_id, now=now)
        case AssignHandoff():
            return assign(ticket, command, available_staff=available_staff)
        case ReplyHandoff():
            return reply(ticket, command)
        case ResolveHandoff():
            return resolve(ticket, command, now=now)
