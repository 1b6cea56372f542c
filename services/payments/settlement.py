"""Reconciliation rules: where Stripe says an attempt stands, the steps that take it there, and what each announces.

A payment attempt only ever moves up this ladder (equal rungs never replace each other):

    open (0)  <  expired, failed (1)  <  paid, mismatch (2)  <  disputed (3)  <  refunded (4)

so duplicated, late or reordered events can repeat a step but never undo one. Refunded is the top: a
dispute after a refund leaves the money where the refund put it, and a refund after a dispute (one
that settled an inquiry, or came once the dispute was over) is the last word on the money.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from schemas.envelope import Money
from schemas.payments import (
    PaymentDisputed,
    PaymentExpired,
    PaymentFailed,
    PaymentMismatch,
    PaymentRefunded,
    PaymentSucceeded,
)
from services.payments.domain import PRODUCER
from services.payments.stripe_event import ASYNC_FAILED, ChargeState, SessionState


class AttemptStatus(StrEnum):
    OPEN = "open"
    EXPIRED = "expired"
    FAILED = "failed"
    PAID = "paid"
    MISMATCH = "mismatch"  # money collected, but not the order's amount or currency
    REFUNDED = "refunded"
    DISPUTED = "disputed"


A = AttemptStatus
RANK: Final[Mapping[AttemptStatus, int]] = {
    A.OPEN: 0,
    A.EXPIRED: 1,
    A.FAILED: 1,
    A.PAID: 2,
    A.MISMATCH: 2,
    A.DISPUTED: 3,
    A.REFUNDED: 4,
}
COLLECTED: Final = frozenset({"paid", "no_payment_required"})
# Attempts whose money Stripe holds for the business: what a person's refund or cancel must give back.
HOLDS_MONEY: Final = frozenset({A.PAID, A.MISMATCH, A.DISPUTED})

PaymentFact = PaymentSucceeded | PaymentMismatch | PaymentFailed | PaymentExpired | PaymentRefunded | PaymentDisputed


class NotThisAttempt(Exception):
    """Stripe's object names another tenant, order or payment than the attempt it was matched with."""


@dataclass(frozen=True)
class Attempt:
    """A payment attempt as reconciliation sees it: what the order asked for, and where the attempt stands."""

    tenant_id: uuid.UUID
    order_id: uuid.UUID
    checkout_session_id: str
    amount: Money
    status: AttemptStatus


@dataclass(frozen=True)
class Observation:
    """Where Stripe's current objects put the attempt; `target` OPEN means there is nothing to do yet."""

    target: AttemptStatus
    collected: AttemptStatus | None = None  # PAID or MISMATCH once money was taken
    received: Money | None = None
    refunded: Money | None = None
    disputed: Money | None = None
    payment_intent: str | None = None
    reason: str = ""


@dataclass(frozen=True)
class Step:
    before: AttemptStatus
    after: AttemptStatus
    announce: bool = True


@dataclass(frozen=True)
class Cause:
    """What made reconciliation run: the envelope ids its events carry, and the audit's source."""

    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    stripe_event_id: str | None
    source: str  # webhook | sweep | checkout | refund


def _money(amount: int | None, currency: str | None) -> Money:
    try:
        return Money(amount_minor=amount or 0, currency=currency or "XXX")
    except ValueError as exc:
        raise NotThisAttempt(f"Stripe reports an amount we cannot read: {amount} {currency}") from exc


def _check_belongs(attempt: Attempt, session: SessionState) -> None:
    if session.id != attempt.checkout_session_id:
        raise NotThisAttempt(f"session {session.id} is not attempt's session {attempt.checkout_session_id}")
    named = (session.metadata.get("tenant_id"), session.metadata.get("order_id"), session.client_reference_id)
    if named != (str(attempt.tenant_id), str(attempt.order_id), str(attempt.order_id)):
        raise NotThisAttempt(f"session {session.id} names tenant/order {named[:2]}, not the attempt's")


def observe(
    attempt: Attempt,
    session: SessionState,
    charge: ChargeState | None,
    *,
    event_type: str | None,
    dispute_reason: str = "",
) -> Observation:
    """Decide from Stripe's current Session (and Charge, for refunds and disputes), never from an event snapshot.

    A completed session whose delayed payment is still pending stays open; it fails only when Stripe
    said so with async_payment_failed and the session is still unpaid. A partial refund leaves it paid.
    """
    _check_belongs(attempt, session)
    if session.status != "complete" or session.payment_status not in COLLECTED:
        if session.status == "expired":
            return Observation(A.EXPIRED)
        if session.status == "complete" and event_type == ASYNC_FAILED:
            return Observation(A.FAILED, reason="async_payment_failed")
        return Observation(A.OPEN)
    received = _money(session.amount_total, session.currency)
    collected = A.PAID if received == attempt.amount else A.MISMATCH
    seen = Observation(collected, collected=collected, received=received, payment_intent=session.payment_intent)
    if charge is None:
        return seen
    if charge.payment_intent is None or charge.payment_intent != session.payment_intent:
        raise NotThisAttempt(f"charge {charge.id} belongs to {charge.payment_intent}, not {session.payment_intent}")
    if charge.refunded:  # refunded wins over disputed, whichever came first (the ladder above)
        refunded = _money(charge.amount_refunded, charge.currency)
        return Observation(A.REFUNDED, collected, received, refunded=refunded, payment_intent=session.payment_intent)
    if charge.disputed:
        disputed = _money(charge.amount, charge.currency)
        intent = session.payment_intent
        return Observation(
            A.DISPUTED, collected, received, disputed=disputed, payment_intent=intent, reason=dispute_reason
        )
    return seen


def settled(current: AttemptStatus, *, with_charge: bool) -> bool:
    """True when nothing Stripe could say about this object would still move the attempt: no need to ask.

    A Session alone can say at most paid (or mismatch); only a Charge can say refunded or disputed.
    """
    return RANK[current] >= (RANK[A.REFUNDED] if with_charge else RANK[A.PAID])


def plan(
    current: AttemptStatus, observation: Observation, *, superseded: bool, announce_payment: bool = True
) -> tuple[Step, ...]:
    """The steps from `current` up to the observed state; none when that would not be a step up.

    A refund or dispute seen before the payment goes through the payment first, so orders hears
    `paid` before `refunded`. An expiry of an attempt a newer one replaced is recorded but not
    announced: orders would otherwise send the order's current checkout back to draft. Without
    `announce_payment` the money collected is recorded but not announced: a person cancelled the
    order and the money goes straight back, so orders would only ask a person to refund it and the
    customer would be thanked for a payment of a cancelled order.
    """
    target = observation.target
    if RANK[target] <= RANK[current]:
        return ()
    steps: list[Step] = []
    state = current
    if RANK[target] > RANK[A.PAID] and RANK[state] < RANK[A.PAID] and observation.collected is not None:
        steps.append(Step(state, observation.collected, announce=announce_payment))
        state = observation.collected
    quiet = (target is A.EXPIRED and superseded) or (target in (A.PAID, A.MISMATCH) and not announce_payment)
    steps.append(Step(state, target, announce=not quiet))
    return tuple(steps)


def announcement(
    step: Step, attempt: Attempt, observation: Observation, *, cause: Cause, event_id: uuid.UUID, at: datetime
) -> PaymentFact | None:
    """The payments event a step publishes, if it publishes one."""
    if not step.announce:
        return None
    base = {
        "event_id": event_id,
        "tenant_id": attempt.tenant_id,
        "correlation_id": cause.correlation_id,
        "causation_id": cause.causation_id,
        "occurred_at": at,
        "producer": PRODUCER,
        "order_id": attempt.order_id,
        "checkout_session_id": attempt.checkout_session_id,
    }
    received = observation.received or attempt.amount
    if step.after is A.PAID:
        return PaymentSucceeded.model_validate({**base, "amount": attempt.amount})
    if step.after is A.MISMATCH:
        return PaymentMismatch.model_validate({**base, "expected": attempt.amount, "received": received})
    if step.after is A.FAILED:
        return PaymentFailed.model_validate({**base, "reason": observation.reason})
    if step.after is A.EXPIRED:
        return PaymentExpired.model_validate(base)
    if step.after is A.REFUNDED:
        return PaymentRefunded.model_validate({**base, "amount": observation.refunded or received})
    if step.after is A.DISPUTED:
        amount = observation.disputed or received
        return PaymentDisputed.model_validate({**base, "amount": amount, "reason": observation.reason})
    return None
