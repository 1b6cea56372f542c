"""handoff.commands subscriber: decide, then write ticket, mode and outbox events in one transaction."""

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypedDict

from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import Author, OutboundMessage
from schemas.envelope import Envelope
from schemas.handoff import (
    AssignHandoff,
    HandoffAssigned,
    HandoffOpened,
    HandoffReplied,
    HandoffResolved,
)
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_EVENTS
from sellmesh.db import in_thread, session_scope
from sellmesh.outbox import add_to_outbox
from sellmesh.service import derived_id, now
from sellmesh.subscriber import PermanentError
from services.handoff import mode
from services.handoff.domain import (
    Assigned,
    Command,
    ConversationMode,
    HandoffRejected,
    Opened,
    Outcome,
    Replied,
    Resolved,
    decide,
    mode_after,
)
from services.handoff.store import HandoffStore

log = logging.getLogger(__name__)

PRODUCER = "handoff"

# Who is free to take a ticket, per tenant. Team members belong to the gateway; until its
# query module exists, auto-assign finds nobody and the ticket waits for a named assign.
StaffLookup = Callable[[uuid.UUID], Sequence[str]]


def no_staff(_tenant_id: uuid.UUID) -> Sequence[str]:
    return ()


class _Meta(TypedDict):
    event_id: uuid.UUID
    tenant_id: uuid.UUID
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    occurred_at: datetime
    producer: str


def _meta(command: Command, kind: str, at: datetime) -> _Meta:
    # Ids derive from the command, so a re-run after a crash emits the same event ids.
    return _Meta(
        event_id=derived_id(command.event_id, kind),
        tenant_id=command.tenant_id,
        correlation_id=command.correlation_id,
        causation_id=command.event_id,
        occurred_at=at,
        producer=PRODUCER,
    )


def events_for(outcome: Outcome, command: Command, at: datetime) -> list[tuple[str, Envelope]]:
    """What to publish for an outcome, as (topic, event); every one is keyed by conversation id."""
    ticket = outcome.ticket
    conversation_id, ticket_id = ticket.conversation_id, ticket.id
    match outcome:
        case Opened():
            opened = HandoffOpened(
                **_meta(command, "opened", at),
                conversation_id=conversation_id,
                ticket_id=ticket_id,
                reason=ticket.reason,
                note=ticket.notes[0] if ticket.notes else "",
            )
            return [(HANDOFF_EVENTS, opened)]
        case Assigned():
            assigned = HandoffAssigned(
                **_meta(command, "assigned", at),
                conversation_id=conversation_id,
                ticket_id=ticket_id,
                staff_id=outcome.staff_id,
            )
            return [(HANDOFF_EVENTS, assigned)]
        case Replied():
            replied = HandoffReplied(
                **_meta(command, "replied", at),
                conversation_id=conversation_id,
                ticket_id=ticket_id,
                staff_id=outcome.staff_id,
            )
            outbound = OutboundMessage(
                **_meta(command, "outbound", at),
                conversation_id=conversation_id,
                channel=ticket.channel,
                channel_account_id=ticket.channel_account_id,
                customer_id=ticket.customer_id,
                author=Author.HUMAN,
                text=outcome.text,
            )
            return [(HANDOFF_EVENTS, replied), (CHANNEL_OUTBOUND, outbound)]
        case Resolved():
            resolved = HandoffResolved(
                **_meta(command, "resolved", at),
                conversation_id=conversation_id,
                ticket_id=ticket_id,
                note=outcome.note,
            )
            return [(HANDOFF_EVENTS, resolved)]
        case _:
            # Noted and Unchanged change nothing anyone downstream acts on.
            return []


def apply_command(
    engine: Engine, command: Command, at: datetime, available_staff: StaffLookup = no_staff
) -> ConversationMode:
    """Apply one command durably and return the conversation's mode as the database now holds it.

    Raises PermanentError when the command is rejected; its transaction, dedup mark included,
    rolls back, so a replay after the state changes is applied rather than skipped.
    """
    with session_scope(engine) as session:
        store = HandoffStore(session)
        fresh = store.mark_processed(
            event_id=command.event_id, tenant_id=command.tenant_id, command_type=command.type, now=at
        )
        if not fresh:
            return store.mode(command.tenant_id, command.conversation_id)
        wants_staff = isinstance(command, AssignHandoff) and not command.staff_id
        try:
            outcome = decide(
                store.open_ticket(command.tenant_id, command.conversation_id),
                command,
                ticket_id=str(derived_id(command.event_id, "ticket")),
                now=at,
                available_staff=available_staff(command.tenant_id) if wants_staff else (),
            )
        except HandoffRejected as exc:
            raise PermanentError(f"{type(exc).__name__}: {exc}") from exc
        store.save_ticket(outcome.ticket)
        current = mode_after(outcome)
        store.set_mode(command.tenant_id, command.conversation_id, current, now=at)
        for topic, event in events_for(outcome, command, at):
            add_to_outbox(session, topic=topic, event=event, key=command.conversation_id)
        return current


async def on_handoff_command(
    command: Command, *, engine: Engine, redis: Redis, available_staff: StaffLookup = no_staff
) -> None:
    current = await in_thread(apply_command, engine, command, now(), available_staff)
    # After the commit, and on duplicates too: a crash between commit and this line left the
    # mirror stale, and the redelivery is what repairs it.
    await mode.set_mode(redis, command.tenant_id, command.conversation_id, current)


def _human_conversations(engine: Engine) -> list[tuple[uuid.UUID, str]]:
    with session_scope(engine) as session:
        return HandoffStore(session).human_conversations()


async def rebuild_mode_mirror(*, engine: Engine, redis: Redis) -> int:
    """Write every human-mode conversation back into Redis (a flushed or replaced Redis forgets them)."""
    pairs = await in_thread(_human_conversations, engine)
    for tenant_id, conversation_id in pairs:
        await mode.set_mode(redis, tenant_id, conversation_id, ConversationMode.HUMAN)
    log.info("handoff mode mirror rebuilt", extra={"human_conversations": len(pairs)})
    return len(pairs)
