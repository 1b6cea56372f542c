"""Payments' tables: checkout attempts, their append-only audit, the Stripe events seen, the sweep's checkpoints.

An attempt is (tenant_id, order_id, attempt number); the number is the order version that asked
for checkout, so a redelivered request finds its row instead of adding a second one.
"""

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, Index, UniqueConstraint
from sqlmodel import Column, Field, SQLModel


class PaymentAttemptRow(SQLModel, table=True):
    __tablename__ = "payments_attempts"
    # The (tenant_id, order_id, attempt) index also serves every tenant-scoped lookup by order.
    __table_args__ = (
        UniqueConstraint("tenant_id", "order_id", "attempt", name="uq_payments_attempts_order_attempt"),
        UniqueConstraint("checkout_session_id", name="uq_payments_attempts_checkout_session_id"),
        Index("ix_payments_attempts_status_expires_at", "status", "expires_at"),
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
    # Known once the session is paid; charge.* events name only the PaymentIntent.
    payment_intent_id: str | None = Field(default=None, max_length=256, index=True)
    # The Connect account the session lives in (sent as Stripe-Account); None: the platform account.
    stripe_account: str | None = Field(default=None, max_length=255)
    # Set (and committed) before a newer checkout expires this session: its expiry is then recorded but not
    # announced, even when Stripe's expired webhook is reconciled before the newer attempt is.
    superseded: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default="0"))


class CheckoutPlanRow(SQLModel, table=True):
    """What one checkout attempt asks Stripe for that a clock decides, committed before its first request.

    Stripe replays an idempotency key only for identical parameters, so every retry of the attempt must ask for
    exactly this expiry and these return URLs, in this account, however late it comes, whatever the owner changed
    since; `generation` moves only when the expiry has to be asked for anew.
    """

    __tablename__ = "payments_checkout_plans"

    tenant_id: uuid.UUID = Field(primary_key=True)
    order_id: uuid.UUID = Field(primary_key=True)
    attempt: int = Field(primary_key=True)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    generation: int = 0
    # The return URLs sent, "" for one not sent. Both NULL only on a plan kept before they were: its retries send
    # the tenant's URLs as they are then, as every retry did.
    success_url: str | None = Field(default=None, max_length=2048)
    cancel_url: str | None = Field(default=None, max_length=2048)
    # The Connect account asked (Stripe-Account), "" for the platform's own. NULL only on a plan kept before it was:
    # its next try asks the tenant's account as it is then, and keeps that one.
    stripe_account: str | None = Field(default=None, max_length=255)


class PaymentAuditRow(SQLModel, table=True):
    """One row per change of an attempt's status, never updated or deleted: the story of every payment."""

    __tablename__ = "payments_audit"
    __table_args__ = (Index("ix_payments_audit_order", "tenant_id", "order_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: uuid.UUID
    order_id: uuid.UUID
    attempt_id: int
    checkout_session_id: str = Field(max_length=256)
    before: str = Field(max_length=16)  # "" when the attempt was created
    after: str = Field(max_length=16)
    source: str = Field(max_length=16)  # checkout, webhook or sweep
    stripe_event_id: str | None = Field(default=None, max_length=256)
    detail: str = Field(default="", max_length=500)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class StripeEventRow(SQLModel, table=True):
    """Every verified Stripe event the webhook took, once: the second line of dedup behind Redis."""

    __tablename__ = "payments_stripe_events"

    stripe_event_id: str = Field(primary_key=True, max_length=256)
    tenant_id: uuid.UUID | None = Field(default=None, index=True)  # None: unhandled type or no tenant found
    event_type: str = Field(max_length=128)
    object_id: str = Field(max_length=256)
    outcome: str = Field(max_length=16)  # accepted, ignored or kept (dead-lettered)
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SweepCheckpointRow(SQLModel, table=True):
    """How far the sweep has read one Stripe account's event list; `version` makes concurrent sweeps safe."""

    __tablename__ = "payments_sweep_checkpoints"

    scope: str = Field(primary_key=True, max_length=255)  # "platform" or a Connect account id
    tenant_id: uuid.UUID | None = None  # the tenant owning the Connect account; None for the platform
    created_through: int = Field(sa_column=Column(BigInteger, nullable=False))
    version: int
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
