"""Ingest-owned tables: the message log (in, out and echoes) and the record of every send attempt."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import Connection, Text, UniqueConstraint, bindparam, func
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlmodel import Column, Field, Session, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class MessageLog(SQLModel, table=True):
    """One row per channel message; its unique key is how a redelivered webhook is recognised."""

    __tablename__ = "ingest_messages"
    __table_args__ = (
        UniqueConstraint("tenant_id", "channel", "direction", "channel_message_id", name="uq_ingest_message"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    channel: str = Field(max_length=16)
    channel_account_id: uuid.UUID
    conversation_id: str = Field(max_length=64, index=True)
    direction: str = Field(max_length=8)  # in, out, echo
    channel_message_id: str = Field(max_length=256)
    event_id: uuid.UUID
    kind: str = Field(max_length=32)
    text: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    created_at: datetime = Field(default_factory=_now)
    # An inbound message's time by the channel (never later than it was logged): Meta counts the 24-hour window
    # from it, and a backlog logged hours late must not hold a window open that Meta has closed.
    sent_at: datetime | None = Field(default=None)


class OutboundSend(SQLModel, table=True):
    """What the sender did with each outbound message, keyed by its event id (never sent twice)."""

    __tablename__ = "ingest_sends"

    event_id: uuid.UUID = Field(primary_key=True)
    tenant_id: uuid.UUID = Field(index=True)
    conversation_id: str = Field(max_length=64)
    author: str = Field(max_length=8)
    status: str = Field(max_length=16)  # sending (a post may be under way), retrying, sent, refused, failed
    provider_message_id: str | None = Field(default=None, max_length=256, index=True)
    error: str = Field(default="", max_length=500)
    updated_at: datetime = Field(default_factory=_now)


def log_message(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    channel: str,
    channel_account_id: uuid.UUID,
    conversation_id: str,
    direction: str,
    channel_message_id: str,
    event_id: uuid.UUID,
    kind: str,
    text: str,
    sent_at: datetime | None = None,
) -> None:
    """Write one message-log row now, as a Core INSERT in the session's transaction (no unit of work for an
    append-only row, and no table-model object: building one cost more than the insert's own statement);
    a message logged before raises IntegrityError here, not at commit."""
    session.execute(
        _LOG_INSERT,
        {
            "tenant_id": tenant_id,
            "channel": channel,
            "channel_account_id": channel_account_id,
            "conversation_id": conversation_id,
            "direction": direction,
            "channel_message_id": channel_message_id,
            "event_id": event_id,
            "kind": kind,
            "text": text,
            "created_at": (logged := _now()),
            "sent_at": _window_start(sent_at, logged),
        },
    )


def _window_start(sent_at: datetime | None, logged: datetime) -> datetime | None:
    """The channel's time for a message, as the window counts it; None where only the log time can tell."""
    if sent_at is None or sent_at.timestamp() <= 0:
        return None  # no timestamp in the webhook parses as the epoch: not a time the customer wrote
    # A channel clock running ahead of ours must not stretch the window past what Meta allows.
    return min(sent_at, logged)


def logged_before(
    connection: Connection, *, tenant_id: uuid.UUID, channel: str, direction: str, channel_message_id: str
) -> bool:
    """Whether the message log's unique key already holds this message: what tells a redelivery from another
    failed insert (any other constraint's failure must not pass for a duplicate and drop the message)."""
    log = MessageLog.__table__  # type: ignore[attr-defined]
    query = sa_select(log.c.id).where(
        log.c.tenant_id == tenant_id,
        log.c.channel == channel,
        log.c.direction == direction,
        log.c.channel_message_id == channel_message_id,
    )
    return connection.execute(query.limit(1)).first() is not None


def last_inbound_at(connection: Connection, *, tenant_id: uuid.UUID, conversation_id: str) -> datetime | None:
    """When the customer last wrote in this conversation (echoes and our sends don't count); None if never."""
    value: datetime | None = connection.execute(
        _LAST_INBOUND, {"tenant": tenant_id, "conversation": conversation_id}
    ).scalar_one()
    if value is None:
        return None
    # SQLite keeps no offset; every time here was written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# The sender's and normalizer's statements, built once with their values bound at execution: SQLAlchemy works out
# a statement's cache key once per object, where a statement built per call paid that walk every time.
_LOG = MessageLog.__table__  # type: ignore[attr-defined]
_LOG_INSERT = sa_insert(_LOG)
# Rows logged before `sent_at` existed have none: their log time is the nearest there is.
_LAST_INBOUND = sa_select(func.max(func.coalesce(_LOG.c.sent_at, _LOG.c.created_at))).where(
    _LOG.c.tenant_id == bindparam("tenant"),
    _LOG.c.conversation_id == bindparam("conversation"),
    _LOG.c.direction == "in",
)
