"""Payments' own table (one row per checkout attempt) and the store that reads and writes it in one session.

An attempt is (tenant_id, order_id, attempt number); the number is the order version that
asked for checkout, so a redelivered request finds its row instead of adding a second one.
"""

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, DateTime, UniqueConstraint
from sqlmodel import Column, Field, Session, SQLModel, select

from schemas.payments import PaymentLinkCreated


class AttemptStatus(StrEnum):
    OPEN = "open"
    PAID = "paid"
    FAILED = "failed"
    EXPIRED = "expired"


class PaymentAttemptRow(SQLModel, table=True):
    __tablename__ = "payments_attempts"
    # The (tenant_id, order_id, attempt) index also serves every tenant-scoped lookup by order.
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id", "attempt", name="uq_payments_attempts_order_attempt"),
        UniqueConstraint("checkout_session_id", name="uq_payments_attempts_checkout_session_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: uuid.UUID
    order_id: uuid.UUID
    attempt: int
    checkout_session_id: str = Field(max_length=256)
    url: str = Field(max_length=2048)
    # Money allows up to 10**12 minor units: more than a 32-bit INTEGER holds on PostgreSQL.
    amount_minor: int = Field(sa_column=Column(BigInteger, nullable=False))
    currency: str = Field(max_length=3)
    status: str = Field(max_length=16)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class PaymentStore:
    """Reads and writes attempts inside the caller's transaction; every query is tenant-scoped."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def attempt(self, tenant_id: uuid.UUID, order_id: uuid.UUID, attempt: int) -> PaymentAttemptRow | None:
        query = select(PaymentAttemptRow).where(
            PaymentAttemptRow.tenant_id == tenant_id,
            PaymentAttemptRow.order_id == order_id,
            PaymentAttemptRow.attempt == attempt,
        )
        return self.session.exec(query).first()

    def add_attempt(self, link: PaymentLinkCreated, *, attempt: int) -> bool:
        """Record the attempt a link was created for; False when it already was (a redelivery)."""
        if self.attempt(link.tenant_id, link.order_id, attempt) is not None:
            return False
        self.session.add(
            PaymentAttemptRow(
                tenant_id=link.tenant_id,
                order_id=link.order_id,
                attempt=attempt,
                checkout_session_id=link.checkout_session_id,
                url=link.url,
                amount_minor=link.amount.amount_minor,
                currency=link.amount.currency,
                status=AttemptStatus.OPEN.value,
                expires_at=link.expires_at,
                created_at=link.occurred_at,
            )
        )
        return True
