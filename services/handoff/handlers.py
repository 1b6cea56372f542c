"""handoff.commands subscriber: decide, then write ticket, roster, mode, outbox and notifications in one transaction.

A refused command is answered with a `rejected` event (queued with the dedup mark, so a redelivery
is not answered twice); only undecodable bytes reach the DLQ, through the subscriber wrapper.
"""

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlalchemy import select as sa_select
from sqlmodel import Session

from schemas.handoff import HandoffCommand, RequestHandoff, ResolveHandoff, SetAvailability
from schemas.topics import HANDOFF_EVENTS
from sellmesh.db import in_thread, session_scope
from sellmesh.service import derived_id, now
from services.gateway.query import HandoffSettings, handoff_settings
from services.handoff import mode
from services.handoff.domain import (
    Assigned,
    Command,
    ConversationMode,
    Facts,
    Opened,
    Outcome,
    Replied,
    Resolved,
    Ticket,
    TicketStatus,
    decide,
    mode_after,
)
from services.handoff.events import events_for, queue, rejection
from services.handoff.inbox import TEXT_LIMIT, InboxMessageRow
from services.handoff.metrics import ESCALATIONS, OPENED, REJECTED, WAIT_SECONDS
from services.handoff.query import since_handed_over
from services.handoff.roster import CommandRefused, decide_availability
from services.handoff.sla import business_deadline, business_hours
from services.handoff.staff import StaffStore
from services.handoff.store import HandoffStore

log = logging.getLogger(__name__)

# Longer than a command's retries take; a crashed worker's redelivery writes its own hold again.
REQUEST_HOLD_SECONDS = 60.0


@dataclass(frozen=True)
class Applied:
    """What one command did: the conversation's mode as the database now holds it (None: no conversation)."""

    mode: ConversationMode | None
    outcome: Outcome | None = None
    refused: CommandRefused | None = None
    # A resolve's: the customer's messages of the ticket the inbox held, the person's to answer.
    handed: list[uuid.UUID] | None = None


def first_response_due(opened_at: datetime, settings: HandoffSettings) -> datetime:
    hours = business_hours(settings.timezone, settings.business_hours)
    return business_deadline(opened_at, settings.first_response_seconds, hours)


def _named(command: HandoffCommand) -> list[str]:
    return [command.actor.id, getattr(command, "staff_id", "")]


def _decide(session: Session, command: Command, at: datetime, settings: HandoffSettings) -> Outcome:
    store, staff = HandoffStore(session), StaffStore(session)
    facts = Facts(
        roster=staff.roster(command.tenant_id, named=_named(command)),
        conversation_known=store.conversation_known(command.tenant_id, command.conversation_id),
    )
    outcome = decide(
        store.current_ticket(command.tenant_id, command.conversation_id),
        command,
        ticket_id=str(derived_id(command.event_id, "ticket")),
        now=at,
        facts=facts,
    )
    if isinstance(outcome, Opened):
        outcome = Opened(replace(outcome.ticket, first_response_due_at=first_response_due(at, settings)))
    return outcome


def _record_human_reply(session: Session, outcome: Replied, event_id: uuid.UUID, at: datetime) -> None:
    """The inbox holds the reply from its commit on, so whoever reads it after `resolved` sees every word."""
    ticket = outcome.ticket
    session.add(
        InboxMessageRow(
            tenant_id=ticket.tenant_id,
            conversation_id=ticket.conversation_id,
            event_id=event_id,
            direction="out",
            author="human",
            text=outcome.text[:TEXT_LIMIT],
            at=at.astimezone(UTC),
        )
    )


def _apply_ticket_command(session: Session, command: Command, at: datetime, settings: HandoffSettings) -> Applied:
    store = HandoffStore(session)
    outcome = _decide(session, command, at, settings)
    store.save_ticket(outcome.ticket)
    assigned = outcome.staff_id if isinstance(outcome, Assigned) else None
    if isinstance(outcome, Opened):
        assigned = outcome.ticket.assigned_to
    if assigned is not None:
        StaffStore(session).mark_assigned(command.tenant_id, assigned, now=at)
    current = mode_after(outcome)
    store.set_mode(command.tenant_id, command.conversation_id, current, now=at)
    queued = events_for(outcome, command, at)
    queue(session, queued, key=command.conversation_id, notify=settings.notify_url is not None, at=at)
    if isinstance(outcome, Replied):
        _record_human_reply(session, outcome, derived_id(command.event_id, "outbound"), at)
    handed = _handed_messages(session, outcome.ticket) if isinstance(outcome, Resolved) else None
    return Applied(current, outcome, handed=handed)


def _handed_again(
    store: HandoffStore, session: Session, command: HandoffCommand, current: ConversationMode | None
) -> list[uuid.UUID] | None:
    """For a redelivered resolve: what its first delivery handed back, so the mirror write a crash after its commit
    missed is made now, marker and all. None for anything else."""
    if not isinstance(command, ResolveHandoff) or current is not ConversationMode.AI:
        return None
    latest = store.current_ticket(command.tenant_id, command.conversation_id)
    if latest is None or latest.status is not TicketStatus.RESOLVED:
        return None
    # Only what the inbox could have held at the resolve: a message logged since is the AI's, by its own turn.
    return _handed_messages(session, latest, until=latest.resolved_at)


def _handed_messages(session: Session, ticket: Ticket, *, until: datetime | None = None) -> list[uuid.UUID]:
    """What the person had before them when handing back: the agent leaves these customer messages to them, so one
    it reads late (it lagged, or restarted) is not answered a second time, while one the inbox never showed them is
    still the AI's to answer."""
    rows = InboxMessageRow.__table__  # type: ignore[attr-defined]
    query = sa_select(rows.c.event_id).where(
        rows.c.tenant_id == ticket.tenant_id,
        rows.c.conversation_id == ticket.conversation_id,
        rows.c.author == "customer",
        since_handed_over(session, ticket.tenant_id, ticket.conversation_id, ticket.opened_at),
    )
    if until is not None:
        query = query.where(rows.c.at <= until)
    return list(session.execute(query).scalars())


def apply_command(
    engine: Engine, command: HandoffCommand, at: datetime, settings: HandoffSettings | None = None
) -> Applied:
    """Apply one command durably; a refusal is recorded and answered, never raised."""
    settings = settings or handoff_settings(engine, command.tenant_id)
    with session_scope(engine) as session:
        store = HandoffStore(session)
        conversation = None if isinstance(command, SetAvailability) else command.conversation_id
        current = store.mode(command.tenant_id, conversation) if conversation is not None else None
        if not store.mark_processed(
            event_id=command.event_id, tenant_id=command.tenant_id, command_type=command.type, now=at
        ):
            return Applied(current, handed=_handed_again(store, session, command, current))
        try:
            if isinstance(command, SetAvailability):
                staff = StaffStore(session)
                member = decide_availability(command, staff.roster(command.tenant_id, named=_named(command)))
                staff.save(command.tenant_id, member, now=at)
                return Applied(None)
            # Every refusal is raised by a decision, before the first write, so none leaves a partial change.
            return _apply_ticket_command(session, command, at, settings)
        except CommandRefused as refused:
            event, key = rejection(command, refused, at)
            queue(session, [(HANDOFF_EVENTS, event)], key=key, notify=False, at=at)
            return Applied(current, refused=refused)


def _observe(applied: Applied) -> None:
    """Metrics count only what committed."""
    outcome = applied.outcome
    if applied.refused is not None:
        REJECTED.labels(applied.refused.reason.value).inc()
        log.info(
            "handoff command rejected", extra={"reason": applied.refused.reason.value, "detail": str(applied.refused)}
        )
    elif isinstance(outcome, Opened):
        OPENED.labels(outcome.ticket.reason.value).inc()
        if outcome.nobody_available:
            ESCALATIONS.labels("no_staff_available").inc()
    elif isinstance(outcome, Replied) and outcome.waited_seconds is not None:
        WAIT_SECONDS.observe(outcome.waited_seconds)


async def on_handoff_command(
    command: HandoffCommand,
    *,
    engine: Engine,
    redis: Redis,
    settings: HandoffSettings | None = None,
    at: datetime | None = None,
) -> None:
    conversation = None if isinstance(command, SetAvailability) else command.conversation_id
    if isinstance(command, RequestHandoff) and conversation is not None:
        # Close the sender's lock before the ticket exists: an AI reply already in flight must not
        # slip out between this commit and the mirror write below. A hold, not a lasting key: should this
        # request never commit (its retries spent, the command in the DLQ), the conversation is not left
        # silent with no ticket behind it.
        await mode.hold_human(redis, command.tenant_id, conversation, REQUEST_HOLD_SECONDS)
    try:
        applied = await in_thread(apply_command, engine, command, at or now(), settings)
    except Exception:
        if conversation is not None:
            await _restore_mirror(engine, redis, command.tenant_id, conversation)
        raise
    _observe(applied)
    if conversation is not None and applied.mode is not None:
        # After the commit, and on duplicates too: a crash between commit and this line left the
        # mirror stale, and the redelivery is what repairs it.
        await mode.set_mode(redis, command.tenant_id, conversation, applied.mode, handed=applied.handed)
        # Then the table again: a command for the same conversation from outside its partition (the sweep's)
        # may have committed the other mode and written it between this commit and the write above.
        stored = await in_thread(_stored_mode, engine, command.tenant_id, conversation)
        if stored is not applied.mode:
            await mode.set_mode(redis, command.tenant_id, conversation, stored)


def _stored_mode(engine: Engine, tenant_id: uuid.UUID, conversation_id: str) -> ConversationMode:
    with session_scope(engine) as session:
        return HandoffStore(session).mode(tenant_id, conversation_id)


async def _restore_mirror(engine: Engine, redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> None:
    try:
        current = await in_thread(_stored_mode, engine, tenant_id, conversation_id)
        await mode.set_mode(redis, tenant_id, conversation_id, current)
    except Exception:
        # The retry of this command writes the mirror again; erring towards "human" keeps the AI quiet.
        log.exception("could not restore the mode mirror after a failed command")
