"""What handoff publishes for each outcome, and how it is queued: outbox rows plus webhook notifications."""

from datetime import datetime
from typing import TypedDict

from sqlmodel import Session

from schemas.channel import Author, OutboundMessage
from schemas.envelope import Envelope
from schemas.handoff import (
    EscalationReason,
    HandoffAssigned,
    HandoffCommand,
    HandoffEscalated,
    HandoffOpened,
    HandoffRejected,
    HandoffReplied,
    HandoffResolved,
    SetAvailability,
    SlaBreached,
)
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_EVENTS
from sellmesh.outbox import add_to_outbox
from sellmesh.service import EnvelopeFields, caused_by, derived_id
from services.handoff.domain import Assigned, Opened, Outcome, Replied, Resolved, Ticket
from services.handoff.notification import queue_notification
from services.handoff.roster import CommandRefused

PRODUCER = "handoff"

Queued = list[tuple[str, Envelope]]


def command_meta(command: HandoffCommand, kind: str, at: datetime) -> EnvelopeFields:
    # Ids derive from the command, so a re-run after a crash emits the same event ids.
    return caused_by(command, kind, producer=PRODUCER, at=at)


def ticket_meta(ticket: Ticket, kind: str, at: datetime) -> EnvelopeFields:
    """For what the sweep decides on its own: derived from the ticket, so two sweeps emit one event."""
    return EnvelopeFields(
        event_id=derived_id(ticket.id, kind),
        tenant_id=ticket.tenant_id,
        correlation_id=ticket.correlation_id or derived_id(ticket.id, "correlation"),
        causation_id=None,
        occurred_at=at,
        producer=PRODUCER,
    )


class _Ids(TypedDict):
    conversation_id: str
    ticket_id: str


def _ids(ticket: Ticket) -> _Ids:
    return _Ids(conversation_id=ticket.conversation_id, ticket_id=ticket.id)


def escalated(ticket: Ticket, meta: EnvelopeFields, reason: EscalationReason) -> HandoffEscalated:
    return HandoffEscalated(**meta, **_ids(ticket), reason=reason)


def events_for(outcome: Outcome, command: HandoffCommand, at: datetime) -> Queued:
    """What to publish for an outcome, as (topic, event); every one is keyed by conversation id."""
    ticket = outcome.ticket
    match outcome:
        case Opened():
            meta = command_meta(command, "opened", at)
            note = ticket.notes[0] if ticket.notes else ""
            queued: Queued = [(HANDOFF_EVENTS, HandoffOpened(**meta, **_ids(ticket), reason=ticket.reason, note=note))]
            if ticket.assigned_to is not None:
                assigned = HandoffAssigned(
                    **command_meta(command, "assigned", at), **_ids(ticket), staff_id=ticket.assigned_to
                )
                queued.append((HANDOFF_EVENTS, assigned))
            if outcome.nobody_available:
                no_staff = escalated(ticket, command_meta(command, "no-staff", at), EscalationReason.NO_STAFF_AVAILABLE)
                queued.append((HANDOFF_EVENTS, no_staff))
            return queued
        case Assigned():
            meta = command_meta(command, "assigned", at)
            return [(HANDOFF_EVENTS, HandoffAssigned(**meta, **_ids(ticket), staff_id=outcome.staff_id))]
        case Replied():
            replied = HandoffReplied(**command_meta(command, "replied", at), **_ids(ticket), staff_id=outcome.staff_id)
            outbound = OutboundMessage(
                **command_meta(command, "outbound", at),
                conversation_id=ticket.conversation_id,
                channel=ticket.channel,
                channel_account_id=ticket.channel_account_id,
                customer_id=ticket.customer_id,
                author=Author.HUMAN,
                text=outcome.text,
            )
            return [(HANDOFF_EVENTS, replied), (CHANNEL_OUTBOUND, outbound)]
        case Resolved():
            meta = command_meta(command, "resolved", at)
            return [(HANDOFF_EVENTS, HandoffResolved(**meta, **_ids(ticket), note=outcome.note))]
        case _:
            # Noted and Unchanged change nothing anyone downstream acts on.
            return []


def sla_breach_events(ticket: Ticket, at: datetime) -> Queued:
    assert ticket.first_response_due_at is not None
    breached = SlaBreached(
        **ticket_meta(ticket, "sla-breached", at), **_ids(ticket), deadline=ticket.first_response_due_at
    )
    escalation = escalated(ticket, ticket_meta(ticket, "sla-escalated", at), EscalationReason.SLA_BREACHED)
    return [(HANDOFF_EVENTS, breached), (HANDOFF_EVENTS, escalation)]


def no_staff_events(ticket: Ticket, at: datetime) -> Queued:
    return [
        (HANDOFF_EVENTS, escalated(ticket, ticket_meta(ticket, "no-staff", at), EscalationReason.NO_STAFF_AVAILABLE))
    ]


def rejection(command: HandoffCommand, refused: CommandRefused, at: datetime) -> tuple[HandoffRejected, str]:
    """The typed refusal and its Kafka key: the conversation, or the staff id for an availability command."""
    event = HandoffRejected(
        **command_meta(command, "rejected", at),
        conversation_id="" if isinstance(command, SetAvailability) else command.conversation_id,
        command_id=command.event_id,
        reason=refused.reason,
        detail=str(refused)[:500],
    )
    return event, command.staff_id if isinstance(command, SetAvailability) else command.conversation_id


def queue(session: Session, queued: Queued, *, key: str, notify: bool, at: datetime) -> None:
    """Outbox rows for everything; a notification row for each ticket event when the tenant has a webhook."""
    for topic, event in queued:
        add_to_outbox(session, topic=topic, event=event, key=key)
        if notify and topic == HANDOFF_EVENTS and not isinstance(event, HandoffRejected):
            queue_notification(session, event, event_type=str(getattr(event, "type", "")), now=at)
