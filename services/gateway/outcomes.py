"""Command outcomes: a row per command the gateway publishes, decided by the event that names it."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, or_
from sqlmodel import Session, col, select, update

from schemas.handoff import HandoffEvent, HandoffRejected
from schemas.orders import CatalogChanged, CommandRejected, OrderChanged, OrderEvent
from sellmesh.db import insert_unless_present, session_scope
from services.gateway.tables import CommandOutcomeRow


@dataclass(frozen=True)
class Decision:
    command_id: uuid.UUID
    status: str  # accepted or rejected
    event_type: str
    reason: str | None = None
    detail: str = ""


def order_decision(event: OrderEvent) -> Decision | None:
    """What an orders event says about the command that caused it; payment facts name no command."""
    if event.command_id is None:
        return None
    match event:
        case CommandRejected():
            return Decision(event.command_id, "rejected", event.type, event.reason.value, event.detail)
        case OrderChanged() | CatalogChanged():
            return Decision(event.command_id, "accepted", event.type, detail=event.change)
    return None


def handoff_decision(event: HandoffEvent) -> Decision | None:
    """Handoff names a refused command in `command_id`; every other event is caused by the command it applies."""
    if isinstance(event, HandoffRejected):
        return Decision(event.command_id, "rejected", event.type, event.reason.value, event.detail)
    if event.causation_id is None:
        return None
    return Decision(event.causation_id, "accepted", event.type)


class KeyReused(Exception):
    """An idempotency key already named a different request."""


def record_pending(
    engine: Engine,
    *,
    command_id: uuid.UUID,
    tenant_id: uuid.UUID,
    topic: str,
    command_type: str,
    target: str,
    actor_kind: str,
    actor_id: str,
    request_hash: str | None = None,
) -> bool:
    """Record a command as pending; True when it is to be published.

    A retry under an idempotency key (`request_hash` set) finds its row: it is published again only while the
    broker is not known to have it (an earlier publish failed, or has not said yet; the services apply a command
    id once, so a second copy on the topic changes nothing). Some commands are never answered (availability, a
    request for a ticket already open), so a pending row alone is no reason to publish again: a late copy of a
    request would hand a conversation back to a person for a moment. `KeyReused` when the row is another
    request's."""
    table = CommandOutcomeRow.__table__  # type: ignore[attr-defined]
    values = {
        "command_id": command_id,
        "tenant_id": tenant_id,
        "topic": topic,
        "command_type": command_type,
        "target": target,
        "actor_kind": actor_kind,
        "actor_id": actor_id,
        "status": "pending",
        "detail": "",
        "request_hash": request_hash,
        "created_at": datetime.now(UTC),
    }
    with session_scope(engine) as session:
        if insert_unless_present(session.connection(), table, values):
            return True
        row = session.exec(
            select(CommandOutcomeRow).where(CommandOutcomeRow.command_id == command_id).with_for_update()
        ).one()
        if request_hash is None or row.tenant_id != tenant_id or row.request_hash != request_hash:
            raise KeyReused(f"command {command_id} was recorded for another request")
        return row.published_at is None or row.reason == NOT_PUBLISHED


def mark_published(engine: Engine, command_id: uuid.UUID, *, at: datetime) -> None:
    """The broker has the command. One a failed publish of the same key settled as `not_published` meanwhile (two
    retries at once) is pending again: it went out after all."""
    with session_scope(engine) as session:
        row = session.exec(
            select(CommandOutcomeRow).where(CommandOutcomeRow.command_id == command_id).with_for_update()
        ).first()
        if row is None:
            return
        row.published_at = row.published_at or at
        if row.reason == NOT_PUBLISHED:
            row.status, row.event_type, row.reason, row.detail, row.decided_at = "pending", None, None, "", None
        session.add(row)


NOT_PUBLISHED = "not_published"


def decide(engine: Engine, tenant_id: uuid.UUID, decision: Decision, *, at: datetime) -> bool:
    """Settle a pending command; False when it is not ours, another tenant's, or already settled (a redelivery).

    A command the gateway gave up publishing is settled again by its own outcome, should one come: a publish
    that timed out may still have reached the broker, and then what the service decided is the truth."""
    unsettled = col(CommandOutcomeRow.status) == "pending"
    if decision.reason != NOT_PUBLISHED:
        unsettled = or_(unsettled, col(CommandOutcomeRow.reason) == NOT_PUBLISHED)
    else:
        # Another request's publish of the same command went out: the broker has it whatever this one saw.
        unsettled = and_(unsettled, col(CommandOutcomeRow.published_at).is_(None))
    query = (
        update(CommandOutcomeRow)
        .where(
            CommandOutcomeRow.command_id == decision.command_id,  # type: ignore[arg-type]
            CommandOutcomeRow.tenant_id == tenant_id,  # type: ignore[arg-type]
            unsettled,
        )
        .values(
            status=decision.status,
            event_type=decision.event_type,
            reason=decision.reason,
            detail=decision.detail[:500],
            decided_at=at,
        )
    )
    with session_scope(engine) as session:
        return bool(session.exec(query).rowcount)


@dataclass(frozen=True)
class OutcomeView:
    command_id: uuid.UUID
    command_type: str
    target: str
    actor_id: str
    status: str
    event_type: str | None
    reason: str | None
    detail: str
    created_at: datetime
    decided_at: datetime | None


def _utc(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


def outcome(engine: Engine, tenant_id: uuid.UUID, command_id: uuid.UUID) -> OutcomeView | None:
    """The command's outcome, or None when it is unknown or another tenant's."""
    with Session(engine) as session:
        row = session.get(CommandOutcomeRow, command_id)
        if row is None or row.tenant_id != tenant_id:
            return None
        created = _utc(row.created_at)
        assert created is not None
        return OutcomeView(
            command_id=row.command_id,
            command_type=row.command_type,
            target=row.target,
            actor_id=row.actor_id,
            status=row.status,
            event_type=row.event_type,
            reason=row.reason,
            detail=row.detail,
            created_at=created,
            decided_at=_utc(row.decided_at),
        )
