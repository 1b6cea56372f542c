"""Gateway tables beside tenancy: team members, command outcomes, and the activity it reads from events.

The last three are the gateway's own read models, filled from `orders.events.v1`,
`handoff.events.v1` and `channel.inbound.v1`; no other service writes or reads them.
"""

import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, Index
from sqlmodel import Column, Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


def _timestamp(*, nullable: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(DateTime(timezone=True), nullable=nullable)


class TeamMember(SQLModel, table=True):
    """A person of the business; every API key belongs to one, and handoff knows them by `str(id)`."""

    __tablename__ = "gateway_team_members"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    tenant_id: uuid.UUID = Field(foreign_key="gateway_tenants.id", index=True)
    name: str = Field(max_length=200)
    email: str = Field(default="", max_length=254)
    role: str = Field(max_length=16)
    created_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    removed_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class CommandOutcomeRow(SQLModel, table=True):
    """A command the gateway published, pending until the deciding service's event names it."""

    __tablename__ = "gateway_command_outcomes"

    command_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    topic: str = Field(max_length=64)
    command_type: str = Field(max_length=32)
    target: str = Field(max_length=256)  # order id, SKU, conversation id or staff id
    actor_kind: str = Field(max_length=16)
    actor_id: str = Field(max_length=128)
    status: str = Field(max_length=16)  # pending, accepted, rejected
    event_type: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=64)
    detail: str = Field(default="", max_length=500)
    created_at: datetime = Field(default_factory=_now, sa_column=_timestamp())
    decided_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))
    # Set for a command sent under an idempotency key: a fingerprint of what the request asked (`bus.send`).
    request_hash: str | None = Field(default=None, max_length=64)
    # When the broker took the command: a keyed retry publishes again only a command it is not known to have.
    published_at: datetime | None = Field(default=None, sa_column=_timestamp(nullable=True))


class ConversationRow(SQLModel, table=True):
    """Where each customer conversation is reached, and how busy it is (from `channel.inbound.v1`)."""

    __tablename__ = "gateway_conversations"
    __table_args__ = (Index("ix_gateway_conversations_started", "tenant_id", "started_at"),)

    tenant_id: uuid.UUID = Field(primary_key=True)
    conversation_id: str = Field(primary_key=True, max_length=256)
    channel: str = Field(max_length=16)
    channel_account_id: str = Field(max_length=256)
    customer_id: str = Field(max_length=256)
    started_at: datetime = Field(sa_column=_timestamp())
    last_message_at: datetime = Field(sa_column=_timestamp())
    messages: int = 0
    last_event_id: uuid.UUID


class HandoffOpeningRow(SQLModel, table=True):
    """One row per handoff ticket opened (from `handoff.events.v1`), for analytics by reason and day."""

    __tablename__ = "gateway_handoff_openings"
    __table_args__ = (Index("ix_gateway_handoff_openings_at", "tenant_id", "at"),)

    event_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID
    conversation_id: str = Field(max_length=256)
    reason: str = Field(max_length=64)
    at: datetime = Field(sa_column=_timestamp())
