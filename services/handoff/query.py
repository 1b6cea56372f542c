"""Read-only handoff views: who is in charge (agent, sender), the inbox, transcripts, the roster (gateway)."""

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import ColumnElement, Engine
from sqlmodel import Session, col, select

from services.handoff.inbox import InboxMessageRow
from services.handoff.mode import HUMAN as HUMAN  # re-exported: the mirror's value while a person owns it
from services.handoff.mode import get_mode, mode_key
from services.handoff.mode import handed_back as handed_back  # re-exported: the agent reads the mirror's value
from services.handoff.mode import handed_to_person as handed_to_person  # re-exported: the agent's check
from services.handoff.mode import mode_of as mode_of  # re-exported: how a reader of the mirror's key reads it
from services.handoff.staff import HandoffStaffRow, StaffStore
from services.handoff.store import HandoffTicketRow, as_utc


async def conversation_mode(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> str:
    """`human` while a person owns the conversation, else `ai` (the Redis mirror of handoff's table)."""
    return await get_mode(redis, tenant_id, conversation_id)


def conversation_mode_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    """The mirror's key, for a reader that fetches it in one round trip with reads of its own; `mode_of`
    (re-exported here) reads the value it holds."""
    return mode_key(tenant_id, conversation_id)


@dataclass(frozen=True)
class InboxMessage:
    direction: str
    author: str
    text: str
    at: datetime
    event_id: uuid.UUID | None = None


@dataclass(frozen=True)
class InboxEntry:
    """An open ticket as a person working the queue sees it."""

    ticket_id: str
    conversation_id: str
    channel: str
    reason: str
    assigned_to: str | None
    opened_at: datetime
    waiting_seconds: int
    unread: int
    messages: list[InboxMessage]
    # What each request that opened or joined the ticket said, oldest first: a request joining an open ticket
    # (a refund Stripe refused, a reply that did not reach the customer) is told only here.
    notes: list[str] = field(default_factory=list)
    last_requested_at: datetime | None = None


def open_inbox(engine: Engine, tenant_id: uuid.UUID, *, now: datetime, recent: int = 10) -> list[InboxEntry]:
    """Open tickets, oldest first, with recent messages; unread counts customer messages since a person wrote."""
    entries = []
    with Session(engine) as session:
        tickets = session.exec(
            select(HandoffTicketRow)
            .where(HandoffTicketRow.tenant_id == tenant_id, HandoffTicketRow.status == "open")
            .order_by(col(HandoffTicketRow.opened_at))
        ).all()
        for ticket in tickets:
            rows = session.exec(
                select(InboxMessageRow)
                .where(
                    InboxMessageRow.tenant_id == tenant_id, InboxMessageRow.conversation_id == ticket.conversation_id
                )
                .order_by(col(InboxMessageRow.at).desc(), col(InboxMessageRow.id).desc())
                .limit(max(recent, 50))
            ).all()
            unread = 0
            for row in rows:  # newest first
                if row.direction == "out" and row.author == "human":
                    break
                unread += row.direction == "in"
            opened_at = as_utc(ticket.opened_at)
            answered = any(r.direction == "out" and r.author == "human" for r in rows)
            entries.append(
                InboxEntry(
                    ticket_id=ticket.id,
                    conversation_id=ticket.conversation_id,
                    channel=ticket.channel,
                    reason=ticket.reason,
                    assigned_to=ticket.assigned_to,
                    opened_at=opened_at,
                    waiting_seconds=0 if answered else max(0, int((now - opened_at).total_seconds())),
                    unread=int(unread),
                    messages=[
                        InboxMessage(r.direction, r.author, r.text, as_utc(r.at)) for r in reversed(rows[:recent])
                    ],
                    notes=list(json.loads(ticket.notes)),
                    last_requested_at=as_utc(ticket.last_requested_at) if ticket.last_requested_at else None,
                )
            )
    return entries


@dataclass(frozen=True)
class HandoffTranscript:
    """What happened while a person owned the conversation: for the AI taking it back."""

    ticket_id: str
    reason: str
    opened_at: datetime
    resolved_at: datetime | None
    messages: list[InboxMessage]
    # Where a reply to the customer goes, as the ticket recorded it.
    channel: str = ""
    channel_account_id: str = ""
    customer_id: str = ""


def since_handed_over(
    session: Session, tenant_id: uuid.UUID, conversation_id: str, opened_at: datetime
) -> ColumnElement[bool]:
    """The inbox rows that belong to a ticket opened at `opened_at`: those after the AI's last word before it.

    By the inbox's own order, not by time: a customer's message carries the channel's send time (whole seconds
    on WhatsApp), which can read as earlier than the ticket it came after. A customer message that came after the
    AI's last word but was never answered (the handoff opened first) belongs to the handoff too, or nobody would
    ever have read it."""
    last_ai = session.exec(
        select(InboxMessageRow.id)
        .where(
            InboxMessageRow.tenant_id == tenant_id,
            InboxMessageRow.conversation_id == conversation_id,
            col(InboxMessageRow.author).in_(("ai", "system")),
            InboxMessageRow.at <= opened_at,
        )
        .order_by(col(InboxMessageRow.at).desc(), col(InboxMessageRow.id).desc())
        .limit(1)
    ).first()
    return col(InboxMessageRow.id) > last_ai if last_ai is not None else col(InboxMessageRow.at) >= opened_at


def handoff_transcript(
    engine: Engine, tenant_id: uuid.UUID, ticket_id: str, *, limit: int = 30
) -> HandoffTranscript | None:
    """The ticket's customer and human messages in the order handoff recorded them, the newest `limit`; None for
    another tenant's."""
    with Session(engine) as session:
        ticket = session.exec(
            select(HandoffTicketRow).where(HandoffTicketRow.tenant_id == tenant_id, HandoffTicketRow.id == ticket_id)
        ).first()
        if ticket is None:
            return None
        opened_at = as_utc(ticket.opened_at)
        resolved_at = as_utc(ticket.resolved_at) if ticket.resolved_at is not None else None
        query = (
            select(InboxMessageRow)
            .where(
                InboxMessageRow.tenant_id == tenant_id,
                InboxMessageRow.conversation_id == ticket.conversation_id,
                col(InboxMessageRow.author).in_(("customer", "human")),
                since_handed_over(session, tenant_id, ticket.conversation_id, opened_at),
            )
            # In the order handoff recorded them, which is the order a person could have read them in: a
            # customer's time is the channel's (whole seconds on WhatsApp, on a clock that may run ahead of ours),
            # and by it a message written after the person's reply could sort before it and read as answered.
            .order_by(col(InboxMessageRow.id).desc())
        )
        if resolved_at is not None:
            query = query.where(InboxMessageRow.at <= resolved_at)
        rows = session.exec(query.limit(limit)).all()
        messages = [InboxMessage(r.direction, r.author, r.text, as_utc(r.at), r.event_id) for r in reversed(rows)]
    return HandoffTranscript(
        ticket.id,
        ticket.reason,
        opened_at,
        resolved_at,
        messages,
        channel=ticket.channel,
        channel_account_id=ticket.channel_account_id,
        customer_id=ticket.customer_id,
    )


@dataclass(frozen=True)
class StaffAvailability:
    staff_id: str
    available: bool
    open_tickets: int
    updated_at: datetime


def team_availability(engine: Engine, tenant_id: uuid.UUID) -> list[StaffAvailability]:
    """The tenant's handoff roster: who takes new tickets, and how many open tickets each holds."""
    with Session(engine) as session:
        roster = StaffStore(session).roster(tenant_id)
        rows = session.exec(select(HandoffStaffRow).where(HandoffStaffRow.tenant_id == tenant_id)).all()
        updated = {row.staff_id: as_utc(row.updated_at) for row in rows}
    return [
        StaffAvailability(m.staff_id, m.available, m.open_tickets, updated[m.staff_id])
        for m in sorted(roster.members.values(), key=lambda m: m.staff_id)
    ]
