"""Asking for a person when Stripe collected money the order did not ask for (amount or currency mismatch)."""

from datetime import datetime
from typing import Final

from sqlalchemy import Engine

from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff
from sellmesh.service import derived_id
from services.orders.query import get_order
from services.payments.domain import PRODUCER
from services.payments.settlement import Attempt, Cause

PAYMENTS_ACTOR: Final = Actor(kind=ActorKind.SYSTEM, id=PRODUCER)


def mismatch_handoff(
    engine: Engine, attempt: Attempt, *, received: str, cause: Cause, at: datetime
) -> RequestHandoff | None:
    """The handoff request for the order's conversation, or None when orders knows no way to reach the customer.

    The conversation comes from orders' read model (`get_order`). The channel address (channel,
    account, customer) is read from the snapshot only if orders exposes one (`channel_address`);
    without it the `mismatch` payment event alone reports the problem.
    """
    order = get_order(engine, attempt.tenant_id, attempt.order_id)
    if order is None or order.conversation_id is None:
        return None
    address = getattr(order, "channel_address", None)
    channel = getattr(address, "channel", None)
    account = getattr(address, "channel_account_id", None)
    customer = getattr(address, "customer_id", None)
    if not isinstance(channel, Channel) or not isinstance(account, str) or not isinstance(customer, str):
        return None
    expected = f"{attempt.amount.amount_minor} {attempt.amount.currency}"
    return RequestHandoff(
        event_id=derived_id(attempt.checkout_session_id, "mismatch-handoff"),
        tenant_id=attempt.tenant_id,
        correlation_id=cause.correlation_id,
        causation_id=cause.causation_id,
        occurred_at=at,
        producer=PRODUCER,
        conversation_id=order.conversation_id,
        actor=PAYMENTS_ACTOR,
        reason=HandoffReason.PAYMENT_MISMATCH,
        channel=channel,
        channel_account_id=account,
        customer_id=customer,
        note=f"order {attempt.order_id}: Stripe collected {received}, the order asked for {expected}; not marked paid",
    )
