"""Handoff's own tables (tickets, conversation mode, processed commands) and the store over one session.

At most one open ticket per (tenant_id, conversation_id): the handler reads the open ticket
and decides inside one transaction, and Kafka keys commands by conversation, so one consumer
handles a conversation at a time. The partial unique index `uq_handoff_tickets_open` is the
second line for the moment a rebalance lets two consumers overlap: the later commit fails
and the wrapper retries it against the ticket the first one opened.
"""

import json
import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, Index, Text, text
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.envelope import Channel
from schemas.handoff import HandoffReason
from services.handoff.domain import ConversationMode, Ticket, TicketStatus
from services.handoff.inbox import InboxMessageRow

_OPEN = text("status = 'open'")


def _moment() -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=True)


class HandoffTicketRow(SQLModel, table=True):
    __tablename__ = "handoff_tickets"
    __table_args__ = (
        Index(
            "uq_handoff_tickets_open",
            "tenant_id",
            "conversation_id",
            unique=True,
            postgresql_where=_OPEN,
            sqlite_where=_OPEN,
        ),
        Index("ix_handoff_tickets_conversation", "tenant_id", "conversation_id", "opened_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    tenant_id: uuid.UUID
    conversation_id: str = Field(max_length=256)
    channel: str = Field(max_length=32)
    channel_account_id: str = Field(max_length=256)
    customer_id: str = Field(max_length=256)
    status: str = Field(max_length=16)
    reason: str = Field(max_length=64)
    notes: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    assigned_to: str | None = Field(default=None, max_length=128)
    opened_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    correlation_id: uuid.UUID | None = Field(default=None)
    first_response_due_at: datetime | None = Field(default=None, sa_column=_moment())
    first_replied_at: datetime | None = Field(default=None, sa_column=_moment())
    sla_breached_at: datetime | None = Field(default=None, sa_column=_moment())
    no_staff_escalated_at: datetime | None = Field(default=None, sa_column=_moment())
    last_requested_at: datetime | None = Field(default=None, sa_column=_moment())


class HandoffModeRow(SQLModel, table=True):
    """The truth of conversation mode; Redis `mode:*` keys only mirror it."""

    __tablename__ = "handoff_modes"

    tenant_id: uuid.UUID = Field(primary_key=True)
    conversation_id: str = Field(primary_key=True, max_length=256)
    mode: str = Field(max_length=16)
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class HandoffProcessedCommandRow(SQLModel, table=True):
    """Command event ids already applied: the database's dedup, behind the wrapper's Redis one."""

    __tablename__ = "handoff_processed_commands"

    event_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    command_type: str = Field(max_length=16)
    processed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def as_utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; everything here is written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def to_ticket(row: HandoffTicketRow) -> Ticket:
    return Ticket(
        id=row.id,
        tenant_id=row.tenant_id,
        conversation_id=row.conversation_id,
        channel=Channel(row.channel),
        channel_account_id=row.channel_account_id,
        customer_id=row.customer_id,
        status=TicketStatus(row.status),
        reason=HandoffReason(row.reason),
        notes=tuple(json.loads(row.notes)),
        assigned_to=row.assigned_to,
        opened_at=as_utc(row.opened_at),
        resolved_at=_maybe_utc(row.resolved_at),
        correlation_id=row.correlation_id,
        first_response_due_at=_maybe_utc(row.first_response_due_at),
        first_replied_at=_maybe_utc(row.first_replied_at),
        sla_breached_at=_maybe_utc(row.sla_breached_at),
        no_staff_escalated_at=_maybe_utc(row.no_staff_escalated_at),
        last_requested_at=_maybe_utc(row.last_requested_at),
    )


def _maybe_utc(value: datetime | None) -> datetime | None:
    return as_utc(value) if value is not None else None


class HandoffStore:
    """Reads and writes handoff state inside the caller's transaction; every query is tenant-scoped."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def mark_processed(self, *, event_id: uuid.UUID, tenant_id: uuid.UUID, command_type: str, now: datetime) -> bool:
        """Record a command as applied; False when it already was (a redelivery)."""
        if self.session.get(HandoffProcessedCommandRow, event_id) is not None:
            return False
        self.session.add(
            HandoffProcessedCommandRow(
                event_id=event_id, tenant_id=tenant_id, command_type=command_type, processed_at=now
            )
        )
        return True

    def open_ticket(self, tenant_id: uuid.UUID, conversation_id: str) -> Ticket | None:
        query = (
            select(HandoffTicketRow)
            .where(
                HandoffTicketRow.tenant_id == tenant_id,
                HandoffTicketRow.conversation_id == conversation_id,
                HandoffTicketRow.status == TicketStatus.OPEN.value,
            )
            .with_for_update()
        )
        row = self.session.exec(query).first()
        return to_ticket(row) if row is not None else None

    def current_ticket(self, tenant_id: uuid.UUID, conversation_id: str) -> Ticket | None:
        """The open ticket, else the latest resolved one (so a late command can be told it is closed)."""
        found = self.open_ticket(tenant_id, conversation_id)
        if found is not None:
            return found
        query = (
            select(HandoffTicketRow)
            .where(HandoffTicketRow.tenant_id == tenant_id, HandoffTicketRow.conversation_id == conversation_id)
            .order_by(col(HandoffTicketRow.resolved_at).desc(), col(HandoffTicketRow.opened_at).desc())
            .limit(1)
        )
        row = self.session.exec(query).first()
        return to_ticket(row) if row is not None else None

    def ticket(self, tenant_id: uuid.UUID, ticket_id: str, *, lock: bool = False) -> Ticket | None:
        query = select(HandoffTicketRow).where(
            HandoffTicketRow.tenant_id == tenant_id, HandoffTicketRow.id == ticket_id
        )
        row = self.session.exec(query.with_for_update() if lock else query).first()
        return to_ticket(row) if row is not None else None

    def conversation_known(self, tenant_id: uuid.UUID, conversation_id: str) -> bool:
        """Handoff has seen this tenant's conversation: a message in the inbox, or a ticket."""
        for table in (InboxMessageRow, HandoffTicketRow):
            query = select(table.id).where(table.tenant_id == tenant_id, table.conversation_id == conversation_id)
            if self.session.exec(query.limit(1)).first() is not None:
                return True
        return False

    def tickets(self, tenant_id: uuid.UUID, conversation_id: str) -> list[Ticket]:
        query = (
            select(HandoffTicketRow)
            .where(HandoffTicketRow.tenant_id == tenant_id, HandoffTicketRow.conversation_id == conversation_id)
            .order_by(col(HandoffTicketRow.opened_at))
        )
        return [to_ticket(row) for row in self.session.exec(query)]

    def save_ticket(self, ticket: Ticket) -> None:
        row = self.session.get(HandoffTicketRow, ticket.id)
        if row is None:
            row = HandoffTicketRow(
                id=ticket.id,
                tenant_id=ticket.tenant_id,
                conversation_id=ticket.conversation_id,
                channel=ticket.channel.value,
                channel_account_id=ticket.channel_account_id,
                customer_id=ticket.customer_id,
                status=ticket.status.value,
                reason=ticket.reason.value,
                opened_at=ticket.opened_at,
                correlation_id=ticket.correlation_id,
            )
        elif row.tenant_id != ticket.tenant_id:
            raise ValueError(f"ticket {ticket.id} belongs to another tenant")
        row.status = ticket.status.value
        row.notes = json.dumps(list(ticket.notes))
        row.assigned_to = ticket.assigned_to
        row.resolved_at = ticket.resolved_at
        row.first_response_due_at = ticket.first_response_due_at
        row.first_replied_at = ticket.first_replied_at
        row.sla_breached_at = ticket.sla_breached_at
        row.no_staff_escalated_at = ticket.no_staff_escalated_at
        row.last_requested_at = ticket.last_requested_at
        self.session.add(row)

    def mode(self, tenant_id: uuid.UUID, conversation_id: str) -> ConversationMode:
        row = self.session.get(HandoffModeRow, (tenant_id, conversation_id))
        return ConversationMode(row.mode) if row is not None else ConversationMode.AI

    def set_mode(self, tenant_id: uuid.UUID, conversation_id: str, mode: ConversationMode, *, now: datetime) -> None:
        row = self.session.get(HandoffModeRow, (tenant_id, conversation_id))
        if row is None:
            row = HandoffModeRow(tenant_id=tenant_id, conversation_id=conversation_id, mode=mode.value, updated_at=now)
        elif row.mode == mode.value:
            return
        else:
            row.mode = mode.value
            row.updated_at = now
        self.session.add(row)

    def human_conversations(self) -> list[tuple[uuid.UUID, str]]:
        """Every conversation in human mode, across tenants: only for rebuilding the Redis mirror."""
        query = select(HandoffModeRow).where(HandoffModeRow.mode == ConversationMode.HUMAN.value)
        return [(row.tenant_id, row.conversation_id) for row in self.session.exec(query)]
