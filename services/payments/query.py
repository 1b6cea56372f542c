"""The read-only query module others use to see an order's payment attempts; nothing here writes."""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.envelope import Money
from services.payments.tables import PaymentAttemptRow, PaymentAuditRow


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; everything here is written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class PaymentChange:
    before: str  # "" when the attempt was created
    after: str
    source: str  # checkout, webhook or sweep
    detail: str
    at: datetime


@dataclass(frozen=True)
class PaymentAttemptView:
    """One checkout session of an order and how its status moved; the payment link itself is left out."""

    attempt: int
    checkout_session_id: str
    amount: Money
    status: str
    created_at: datetime
    expires_at: datetime
    changes: list[PaymentChange]


def payments_for_order(engine: Engine, tenant_id: uuid.UUID, order_id: uuid.UUID) -> list[PaymentAttemptView]:
    """The order's payment attempts, oldest first; empty for an unknown or another tenant's order."""
    with Session(engine) as session:
        attempts = session.exec(
            select(PaymentAttemptRow)
            .where(PaymentAttemptRow.tenant_id == tenant_id, PaymentAttemptRow.order_id == order_id)
            .order_by(col(PaymentAttemptRow.attempt))
        ).all()
        audit = session.exec(
            select(PaymentAuditRow)
            .where(PaymentAuditRow.tenant_id == tenant_id, PaymentAuditRow.order_id == order_id)
            .order_by(col(PaymentAuditRow.id))
        ).all()
    return [
        PaymentAttemptView(
            attempt=row.attempt,
            checkout_session_id=row.checkout_session_id,
            amount=Money(amount_minor=row.amount_minor, currency=row.currency),
            status=row.status,
            created_at=_utc(row.created_at),
            expires_at=_utc(row.expires_at),
            changes=[
                PaymentChange(before=a.before, after=a.after, source=a.source, detail=a.detail, at=_utc(a.at))
                for a in audit
                if a.attempt_id == row.id
            ],
        )
        for row in attempts
    ]
