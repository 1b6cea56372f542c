"""Read-only view of who is in charge of a conversation, for the agent and the sender."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from services.handoff.inbox import InboxMessageRow
from services.handoff.mode import get_mode
from services.handoff.store import HandoffTicketRow, as_utc


async def conversation_mode(redis: Redis, tenant_id: uuid.UUID, conversation_id: str) -> str:
    """`human` while a person owns the conversation, else `ai` (the Redis mirror of handoff's table)."""
    return await get_mode(redis, tenant_id, conversation_id)


@dataclass(frozen=True)
class InboxMessage:
    direction: str
    author: str
    text: str
    at: datetime


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
                )
            )
    return entries
