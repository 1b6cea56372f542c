"""Giving an order's money back at Stripe when a person of the business refunds or cancels it."""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from schemas.orders import OrderChanged
from schemas.topics import HANDOFF_COMMANDS
from sellmesh.db import in_thread, session_scope
from sellmesh.outbox import add_to_outbox
from sellmesh.service import now
from services.payments.domain import refund_key
from services.payments.escalation import refund_handoff
from services.payments.settlement import HOLDS_MONEY, AttemptStatus, Cause
from services.payments.store import PaymentAttemptRow, PaymentStore, attempt_view
from services.payments.stripe_event import CHARGE_REFUNDED
from services.payments.stripe_gateway import CheckoutRejected, ServerErrorKept, StripeGateway

if TYPE_CHECKING:
    # The reconciler refunds through this module too (money a person took back comes in late).
    from services.payments.reconciler import Reconciler

log = logging.getLogger(__name__)


def _attempts(engine: Engine, tenant_id: uuid.UUID, order_id: uuid.UUID) -> list[PaymentAttemptRow]:
    with session_scope(engine) as session:
        return PaymentStore(session).other_attempts(tenant_id, order_id, attempt=-1)


async def refund_collected_attempts(
    event: OrderChanged,
    *,
    gateway: StripeGateway,
    engine: Engine,
    reconciler: "Reconciler",
    clock: Callable[[], datetime] = now,
) -> None:
    """Give back at Stripe the money each attempt of the order holds (paid, mismatch or disputed), then settle each
    from the refunded charge (Stripe's `charge.refunded` event finds it settled). One refund per session, by its
    idempotency key.

    A refund Stripe refuses (a charge under dispute) is asked of a person in the order's conversation; with no
    conversation to ask in, the event is dead-lettered once the other attempts are refunded.
    """
    cause = Cause(event.correlation_id, event.event_id, stripe_event_id=None, source="refund")
    unasked: list[str] = []
    for row in await in_thread(_attempts, engine, event.tenant_id, event.order_id):
        refusal = await refund_attempt(
            row, gateway=gateway, engine=engine, reconciler=reconciler, cause=cause, at=clock()
        )
        if refusal is not None:
            unasked.append(refusal)
    if unasked:
        raise CheckoutRejected(f"refund refused and no conversation to ask a person in: {'; '.join(unasked)}")


async def refund_attempt(
    row: PaymentAttemptRow,
    *,
    gateway: StripeGateway,
    engine: Engine,
    reconciler: "Reconciler",
    cause: Cause,
    at: datetime,
) -> str | None:
    """Give back the money one attempt holds, if it holds any, and settle it from the refunded charge. A refund
    Stripe refuses is asked of a person; the refusal is returned when there is no conversation to ask in."""
    if AttemptStatus(row.status) not in HOLDS_MONEY:
        return None
    account = row.stripe_account
    session = await gateway.retrieve_session(row.checkout_session_id, account=account)
    intent = row.payment_intent_id or session.payment_intent
    if intent is None:
        raise CheckoutRejected(f"paid session {row.checkout_session_id} names no PaymentIntent to refund")
    try:
        charge_id = await _refund_in_full(gateway, intent, account=account, key=refund_key(row.checkout_session_id))
    except CheckoutRejected as exc:
        log.warning("Stripe refused a refund", extra={"attempt": row.attempt, "status": row.status})
        if not await in_thread(_ask_for_refund, engine, row, str(exc), cause, at):
            return f"{row.checkout_session_id}: {exc}"
        return None
    log.info("order's payment refunded at Stripe", extra={"attempt": row.attempt})
    if charge_id is not None:
        charge = await gateway.retrieve_charge(charge_id, account=account)
        await reconciler.settle(row, session, charge, cause=cause, event_type=CHARGE_REFUNDED)
    return None


async def _refund_in_full(gateway: StripeGateway, intent: str, *, account: str | None, key: str) -> str | None:
    """The refund under the session's key. Stripe replays a 5xx it answered under a key for a day, which would hold
    the customer's money that long: after one, the refund is asked once more under a key of its own. That cannot
    refund twice: a full refund of a charge already refunded is answered `charge_already_refunded` (None)."""
    try:
        return await gateway.refund(intent, account=account, idempotency_key=key)
    except ServerErrorKept:
        log.warning("Stripe answered a refund 5xx under its key; asking again under another")
        return await gateway.refund(intent, account=account, idempotency_key=f"{key}:{uuid.uuid4().hex}")


def _ask_for_refund(engine: Engine, row: PaymentAttemptRow, refusal: str, cause: Cause, at: datetime) -> bool:
    """Queue the request for a person to give the money back; False when the order has no conversation."""
    request = refund_handoff(engine, attempt_view(row), refusal=refusal, cause=cause, at=at)
    if request is None:
        return False
    with session_scope(engine) as session:
        add_to_outbox(session, topic=HANDOFF_COMMANDS, event=request, key=request.conversation_id)
    return True
