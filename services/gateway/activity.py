"""The gateway's activity read model: conversations (from channel.inbound.v1) and handoff openings."""

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.channel import InboundMessage
from schemas.handoff import HandoffOpened
from sellmesh.db import session_scope
from services.gateway.tables import ConversationRow, HandoffOpeningRow


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; everything here is written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def record_inbound(engine: Engine, message: InboundMessage) -> None:
    """Count one customer message; the same event twice in a row (a redelivery) counts once."""
    with session_scope(engine) as session:
        row = session.get(ConversationRow, (message.tenant_id, message.conversation_id))
        if row is None:
            session.add(
                ConversationRow(
                    tenant_id=message.tenant_id,
                    conversation_id=message.conversation_id,
                    channel=message.channel.value,
                    channel_account_id=message.channel_account_id,
                    customer_id=message.customer_id,
                    started_at=message.occurred_at,
                    last_message_at=message.occurred_at,
                    messages=1,
                    last_event_id=message.event_id,
                )
            )
            return
        if row.last_event_id == message.event_id:
            return
        row.messages += 1
        row.last_event_id = message.event_id
        row.last_message_at = max(_utc(row.last_message_at), message.occurred_at)
        session.add(row)


def record_opening(engine: Engine, event: HandoffOpened) -> None:
    with session_scope(engine) as session:
        if session.get(HandoffOpeningRow, event.event_id) is None:
            session.add(
                HandoffOpeningRow(
                    event_id=event.event_id,
                    tenant_id=event.tenant_id,
                    conversation_id=event.conversation_id,
                    reason=event.reason.value,
                    at=event.occurred_at,
                )
            )


@dataclass(frozen=True)
class ConversationView:
    conversation_id: str
    channel: str
    channel_account_id: str
    customer_id: str
    started_at: datetime
    last_message_at: datetime
    messages: int


def _view(row: ConversationRow) -> ConversationView:
    return ConversationView(
        conversation_id=row.conversation_id,
        channel=row.channel,
        channel_account_id=row.channel_account_id,
        customer_id=row.customer_id,
        started_at=_utc(row.started_at),
        last_message_at=_utc(row.last_message_at),
        messages=row.messages,
    )


def conversation(engine: Engine, tenant_id: uuid.UUID, conversation_id: str) -> ConversationView | None:
    with Session(engine) as session:
        row = session.get(ConversationRow, (tenant_id, conversation_id))
        return None if row is None else _view(row)


def recent_conversations(
    engine: Engine, tenant_id: uuid.UUID, *, limit: int, before: datetime | None = None
) -> list[ConversationView]:
    """The tenant's conversations by latest message, newest first, older than `before` when given."""
    query = select(ConversationRow).where(ConversationRow.tenant_id == tenant_id)
    if before is not None:
        query = query.where(col(ConversationRow.last_message_at) < before)
    query = query.order_by(col(ConversationRow.last_message_at).desc(), col(ConversationRow.conversation_id)).limit(
        limit
    )
    with Session(engine) as session:
        return [_view(row) for row in session.exec(query)]


def conversations_started(engine: Engine, tenant_id: uuid.UUID, *, since: datetime, until: datetime) -> Counter[date]:
    """New conversations per UTC day in [since, until)."""
    query = select(ConversationRow.started_at).where(
        ConversationRow.tenant_id == tenant_id,
        col(ConversationRow.started_at) >= since,
        col(ConversationRow.started_at) < until,
    )
    with Session(engine) as session:
        return Counter(_utc(at).date() for at in session.exec(query))


def handoffs_opened(
    engine: Engine, tenant_id: uuid.UUID, *, since: datetime, until: datetime
) -> dict[date, Counter[str]]:
    """Handoff tickets opened per UTC day in [since, until), by reason."""
    query = select(HandoffOpeningRow.at, HandoffOpeningRow.reason).where(
        HandoffOpeningRow.tenant_id == tenant_id,
        col(HandoffOpeningRow.at) >= since,
        col(HandoffOpeningRow.at) < until,
    )
    days: dict[date, Counter[str]] = defaultdict(Counter)
    with Session(engine) as session:
        for at, reason in session.exec(query):
            days[_utc(at).date()][reason] += 1
    return days
