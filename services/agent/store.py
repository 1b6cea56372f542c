"""Agent-owned table: model usage per turn, per tenant and conversation (tokens and cost)."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, Index
from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class AgentUsage(SQLModel, table=True):
    """One row per answered turn; the model calls of its tool loop are summed into it."""

    __tablename__ = "agent_usage"
    __table_args__ = (Index("ix_agent_usage_tenant_at", "tenant_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: uuid.UUID
    conversation_id: str = Field(max_length=64)
    model: str = Field(max_length=128)
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))
