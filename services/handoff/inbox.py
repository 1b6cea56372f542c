"""The inbox read model: each conversation's recent messages, kept by handoff for people working the queue."""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Engine, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from schemas.channel import InboundMessage, OutboundMessage, content_text
from sellmesh.group_insert import GroupInsert

TEXT_LIMIT = 1000


class InboxMessageRow(SQLModel, table=True):
    __tablename__ = "handoff_inbox_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", name="uq_handoff_inbox_event"),
        Index("ix_handoff_inbox_conversation", "tenant_id", "conversation_id", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: uuid.UUID
    conversation_id: str = Field(max_length=256)
    event_id: uuid.UUID
    direction: str = Field(max_length=8)  # in, out
    author: str = Field(max_length=16)  # customer, ai, human, system
    text: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def inbound_values(message: InboundMessage) -> dict[str, Any]:
    """The inbox row of a customer's message, as plain values (`InboxMessageRow`'s columns but the id): a
    table-model object cost more to build than its share of the group's insert."""
    text = content_text(message.content) or f"[{message.content.kind}]"
    return _values(message, direction="in", author="customer", text=text, at=message.sent_at)


def outbound_values(message: OutboundMessage) -> dict[str, Any]:
    at = message.occurred_at.astimezone(UTC)
    return _values(message, direction="out", author=message.author.value, text=message.text, at=at)


def _values(
    message: InboundMessage | OutboundMessage, *, direction: str, author: str, text: str, at: datetime
) -> dict[str, Any]:
    return {
        "tenant_id": message.tenant_id,
        "conversation_id": message.conversation_id,
        "event_id": message.event_id,
        "direction": direction,
        "author": author,
        "text": text[:TEXT_LIMIT],
        "at": at,
    }


class InboxWriter:
    """What the service's subscriptions use: the rows of messages handled at once go in one transaction. The same
    event again inserts nothing: the unique key keeps the inbox exact."""

    def __init__(self, engine: Engine) -> None:
        self.rows = GroupInsert(engine, InboxMessageRow.__table__)  # type: ignore[attr-defined]

    async def on_inbound(self, message: InboundMessage) -> None:
        await self.rows.insert(inbound_values(message))

    async def on_outbound(self, message: OutboundMessage) -> None:
        await self.rows.insert(outbound_values(message))
