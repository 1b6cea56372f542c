"""The read-only query module others use to read a conversation's message log; nothing here writes."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from services.ingest.store import MessageLog

MAX_MESSAGES: Final = 200


@dataclass(frozen=True)
class LoggedMessage:
    id: int
    direction: str  # in (the customer), out (sent by us), echo (sent from the business's own app)
    kind: str
    text: str
    at: datetime


def conversation_messages(
    engine: Engine, tenant_id: uuid.UUID, conversation_id: str, *, limit: int = 50, before: int | None = None
) -> list[LoggedMessage]:
    """The conversation's messages newest first, `limit` (at most 200) older than message id `before`."""
    query = select(MessageLog).where(MessageLog.tenant_id == tenant_id, MessageLog.conversation_id == conversation_id)
    if before is not None:
        query = query.where(col(MessageLog.id) < before)
    query = query.order_by(col(MessageLog.id).desc()).limit(max(0, min(limit, MAX_MESSAGES)))
    with Session(engine) as session:
        return [
            LoggedMessage(
                id=row.id or 0,
                direction=row.direction,
                kind=row.kind,
                text=row.text,
                at=row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC),
            )
            for row in session.exec(query)
        ]
