"""Asking for a person about an order's payment: money collected at another amount than the order's, a refund
Stripe would not make, or a checkout that cannot be made."""

import uuid
from datetime import datetime
from typing import Final

from sqlalchemy import Engine

from schemas.envelope import Actor, ActorKind
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.payments import CheckoutRefused
from sellmesh.service import derived_id
from services.orders.query import order_contact
from services.payments.domain import PRODUCER
from services.payments.settlement import Attempt, Cause

PAYMENTS_ACTOR: Final = Actor(kind=ActorKind.SYSTEM, id=PRODUCER)
NOTE_LENGTH: Final = 500  # RequestHandoff.note


def order_handoff(
    engine: Engine,
    *,
    tenant_id: uuid.UUID,
    order_id: uuid.UUID,
    reason: HandoffReason,
    note: str,
    event_id: uuid.UUID,
    cause: Cause,
    at: datetime,
) -> RequestHandoff | None:
    """The handoff request for the order's conversation, or None when orders knows no way to reach the customer
    (an order made without a conversation): then the payment event or the dead letter alone reports it."""
    contact = order_contact(engine, tenant_id, order_id)
    if contact is None:
        return None
    return RequestHandoff(
        event_id=event_id,
        tenant_id=tenant_id,
        correlation_id=cause.correlation_id,
        causation_id=cause.causation_id,
        occurred_at=at,
        producer=PRODUCER,
        conversation_id=contact.conversation_id,
        actor=PAYMENTS_ACTOR,
        reason=reason,
        channel=contact.address.channel,
        channel_account_id=contact.address.channel_account_id,
        customer_id=contact.address.customer_id,
        note=note[:NOTE_LENGTH],
    )


def mismatch_handoff(
    engine: Engine, attempt: Attempt, *, received: str, cause: Cause, at: datetime
) -> RequestHandoff | None:
    expected = f"{attempt.amount.amount_minor} {attempt.amount.currency}"
    return order_handoff(
        engine,
        tenant_id=attempt.tenant_id,
        order_id=attempt.order_id,
        reason=HandoffReason.PAYMENT_MISMATCH,
        note=f"order {attempt.order_id}: Stripe collected {received}, the order asked for {expected}; not marked paid",
        event_id=derived_id(attempt.checkout_session_id, "mismatch-handoff"),
        cause=cause,
        at=at,
    )


def refund_handoff(
    engine: Engine, attempt: Attempt, *, refusal: str, cause: Cause, at: datetime
) -> RequestHandoff | None:
    """A person of the business was to get the customer's money back and Stripe refused the refund (a disputed
    charge: the dispute decides where that money goes). Payment_mismatch, as orders asks about money an order
    will not keep."""
    amount = f"{attempt.amount.amount_minor} {attempt.amount.currency}"
    return order_handoff(
        engine,
        tenant_id=attempt.tenant_id,
        order_id=attempt.order_id,
        reason=HandoffReason.PAYMENT_MISMATCH,
        note=f"order {attempt.order_id}: Stripe refused to refund {amount} ({attempt.status}): {refusal}; "
        "the customer's money is not back",
        event_id=derived_id(attempt.checkout_session_id, "refund-handoff"),
        cause=cause,
        at=at,
    )


def checkout_handoff(engine: Engine, refused: CheckoutRefused, *, cause: Cause, at: datetime) -> RequestHandoff | None:
    """The customer asked to pay and cannot: the AI would only ask for the same checkout again, and be refused."""
    return order_handoff(
        engine,
        tenant_id=refused.tenant_id,
        order_id=refused.order_id,
        reason=HandoffReason.REJECTED_COMMAND,
        note=f"order {refused.order_id}: no payment link could be made ({refused.reason}); the order is back in draft",
        event_id=derived_id(refused.event_id, "handoff"),
        cause=cause,
        at=at,
    )
