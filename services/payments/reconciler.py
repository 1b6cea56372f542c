"""The one reconcile path for webhooks, the sweep and checkout: re-read Stripe, decide, commit steps and events."""

import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Final

from prometheus_client import Counter
from sqlalchemy import Engine

from schemas.handoff import RequestHandoff
from schemas.topics import HANDOFF_COMMANDS, PAYMENTS_EVENTS
from sellmesh.db import in_thread, session_scope
from sellmesh.metrics import registry
from sellmesh.outbox import add_to_outbox
from sellmesh.service import derived_id, now
from services.orders.query import taken_back_by_person
from services.payments.escalation import mismatch_handoff
from services.payments.refund import refund_attempt
from services.payments.settlement import (
    HOLDS_MONEY,
    RANK,
    Attempt,
    AttemptStatus,
    Cause,
    NotThisAttempt,
    Observation,
    announcement,
    observe,
    plan,
    settled,
)
from services.payments.store import Conflict, PaymentAttemptRow, PaymentStore, attempt_view
from services.payments.stripe_event import ChargeState, SessionState, StripeSignal
from services.payments.stripe_gateway import CheckoutRejected, StripeGateway

log = logging.getLogger(__name__)

# More than the longest climb (open, expired, paid, disputed, refunded): each conflict means one rung was taken.
CONFLICT_ATTEMPTS: Final = 5

RECONCILED = Counter(
    "sellmesh_payments_reconciled_total",
    "Stripe objects reconciled against a payment attempt, by source and outcome.",
    ["source", "outcome"],
    registry=registry,
)
TRANSITIONS = Counter(
    "sellmesh_payments_transitions_total",
    "Payment attempt status changes, by new status (paid, mismatch, disputed, ...).",
    ["status"],
    registry=registry,
)
# Every status at zero, so a first mismatch or dispute is an increase an alert can see.
for _status in AttemptStatus:
    TRANSITIONS.labels(_status.value)
COLLECTED = Counter(
    "sellmesh_payments_collected_minor_total",
    "Money collected on attempts that became paid, in minor units (cents) of each currency.",
    ["currency"],
    registry=registry,
)


# (attempt, what Stripe collected, cause, now) -> the handoff to request, or None when the customer is unreachable
HandoffFinder = Callable[[Attempt, str, Cause, datetime], RequestHandoff | None]


class Outcome(StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    UNKNOWN = "unknown"  # no attempt of ours owns the Stripe object
    REJECTED = "rejected"  # routed with another tenant or order, or Stripe's object is not the attempt's


class Reconciler:
    """Decides from Stripe's current Session and Charge; events only say which objects to look at."""

    def __init__(
        self,
        *,
        stripe: StripeGateway,
        engine: Engine,
        clock: Callable[[], datetime] = now,
        handoff_for: HandoffFinder | None = None,
    ) -> None:
        self.stripe = stripe
        self.engine = engine
        self.clock = clock
        self.handoff_for = handoff_for or self._order_handoff

    async def reconcile(self, signal: StripeSignal, *, cause: Cause, tenant_id: uuid.UUID | None) -> Outcome:
        """Reconcile the attempt a Stripe event is about; `tenant_id` is the tenant it was routed to, if any."""
        row = await self._locate(signal)
        if row is None:
            return _count(cause, Outcome.UNKNOWN)
        routed_elsewhere = tenant_id is not None and tenant_id != row.tenant_id
        if routed_elsewhere or (signal.order_id is not None and signal.order_id != row.order_id):
            log.warning("stripe object routed to another tenant or order", extra={"stripe_event": signal.event_id})
            return _count(cause, Outcome.REJECTED)
        if settled(AttemptStatus(row.status), with_charge=signal.charge_id is not None):
            # Not a disputed charge: Stripe refuses to refund one, and each late event would ask a person again.
            if AttemptStatus(row.status) in HOLDS_MONEY - {AttemptStatus.DISPUTED} and await in_thread(
                taken_back_by_person, self.engine, row.tenant_id, row.order_id
            ):
                # A quiet give-back that failed after its payment was recorded (Stripe down, the worker killed):
                # this redelivery is the only thing that will ever retry it. `refund:{session}` keeps it one refund.
                await self._give_back(row.checkout_session_id, cause)
            return _count(cause, Outcome.UNCHANGED)  # a duplicate or a late event: no need to ask Stripe
        account = row.stripe_account
        session = await self.stripe.retrieve_session(row.checkout_session_id, account=account)
        charge = await self.stripe.retrieve_charge(signal.charge_id, account=account) if signal.charge_id else None
        return await self.settle(row, session, charge, cause=cause, event_type=signal.event_type, reason=signal.reason)

    async def settle(
        self,
        row: PaymentAttemptRow,
        session: SessionState,
        charge: ChargeState | None = None,
        *,
        cause: Cause,
        event_type: str | None = None,
        reason: str = "",
        announce_payment: bool = True,
    ) -> Outcome:
        """Apply what Stripe's current objects say to the attempt (`announce_payment`: see `settlement.plan`)."""
        try:
            observation = observe(attempt_view(row), session, charge, event_type=event_type, dispute_reason=reason)
        except NotThisAttempt as exc:
            log.warning("stripe object does not match its attempt", extra={"error": str(exc)[:300]})
            return _count(cause, Outcome.REJECTED)
        if observation.target is AttemptStatus.OPEN:
            return _count(cause, Outcome.UNCHANGED)
        give_back = (
            announce_payment
            and observation.collected is not None
            and RANK[AttemptStatus(row.status)] < RANK[AttemptStatus.PAID]
            and await in_thread(taken_back_by_person, self.engine, row.tenant_id, row.order_id)
        )
        if give_back:
            # A person cancelled or refunded the order before this payment was reconciled (Stripe's event beat
            # payments to the cancel): announced, orders would ask a person to refund it and the agent would thank
            # the customer. It is recorded quietly and given back here; the `refund:{session}` idempotency key
            # makes this and the cancel's own refund one refund, whichever runs first.
            announce_payment = False
        handoff = None
        if (
            announce_payment
            and observation.collected is AttemptStatus.MISMATCH
            and RANK[AttemptStatus(row.status)] < RANK[AttemptStatus.MISMATCH]
        ):
            received = observation.received
            text = f"{received.amount_minor} {received.currency}" if received else "an unreadable amount"
            handoff = await in_thread(self._handoff, row, text, cause)
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                applied = await in_thread(self._commit, row.id, observation, cause, handoff, announce_payment)
                break
            except Conflict:
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
        if give_back:
            await self._give_back(row.checkout_session_id, cause)
        return _count(cause, Outcome.APPLIED if applied else Outcome.UNCHANGED)

    async def _give_back(self, checkout_session_id: str, cause: Cause) -> None:
        row = await in_thread(self._by_session, checkout_session_id)  # as just settled: it now holds the money
        if row is None:
            return
        log.info("payment for an order a person took back is refunded", extra={"attempt": row.attempt})
        refusal = await refund_attempt(
            row, gateway=self.stripe, engine=self.engine, reconciler=self, cause=cause, at=self.clock()
        )
        if refusal is not None:
            raise CheckoutRejected(f"refund refused and no conversation to ask a person in: {refusal}")

    async def _locate(self, signal: StripeSignal) -> PaymentAttemptRow | None:
        if signal.session_id is not None:
            return await in_thread(self._by_session, signal.session_id)
        if signal.payment_intent is None:
            return None
        row = await in_thread(self._by_payment_intent, signal.payment_intent)
        if row is not None:
            return row
        # A refund or dispute reconciled before its payment: the intent is not recorded yet, Stripe knows its session.
        found = await self.stripe.find_session(signal.payment_intent, account=signal.account)
        return None if found is None else await in_thread(self._by_session, found.id)

    def _by_session(self, session_id: str) -> PaymentAttemptRow | None:
        with session_scope(self.engine) as session:
            return PaymentStore(session).by_session(session_id)

    def _by_payment_intent(self, payment_intent: str) -> PaymentAttemptRow | None:
        with session_scope(self.engine) as session:
            return PaymentStore(session).by_payment_intent(payment_intent)

    def _order_handoff(self, attempt: Attempt, received: str, cause: Cause, at: datetime) -> RequestHandoff | None:
        return mismatch_handoff(self.engine, attempt, received=received, cause=cause, at=at)

    def _handoff(self, row: PaymentAttemptRow, received: str, cause: Cause) -> RequestHandoff | None:
        request = self.handoff_for(attempt_view(row), received, cause, self.clock())
        if request is None:
            log.warning("payment mismatch without a channel address: only the mismatch event reports it")
        return request

    def _commit(
        self,
        attempt_id: int | None,
        observation: Observation,
        cause: Cause,
        handoff: RequestHandoff | None,
        announce_payment: bool = True,
    ) -> int:
        """Steps from the attempt's status as it is now, each with its audit row and event, in one transaction."""
        at = self.clock()
        with session_scope(self.engine) as session:
            store = PaymentStore(session)
            row = session.get(PaymentAttemptRow, attempt_id)
            if row is None:
                return 0
            others = store.other_attempts(row.tenant_id, row.order_id, attempt=row.attempt)
            superseded = row.superseded or any(other.attempt > row.attempt for other in others)
            attempt = attempt_view(row)
            steps = plan(attempt.status, observation, superseded=superseded, announce_payment=announce_payment)
            for step in steps:
                store.advance(row, step, cause=cause, payment_intent=observation.payment_intent, at=at)
                event_id = derived_id("payment", row.checkout_session_id, step.after.value)
                fact = announcement(step, attempt, observation, cause=cause, event_id=event_id, at=at)
                if fact is not None:
                    add_to_outbox(session, topic=PAYMENTS_EVENTS, event=fact, key=str(row.order_id))
                if step.after is AttemptStatus.MISMATCH and handoff is not None:
                    add_to_outbox(session, topic=HANDOFF_COMMANDS, event=handoff, key=handoff.conversation_id)
        for step in steps:
            TRANSITIONS.labels(step.after.value).inc()
            if step.after is AttemptStatus.PAID and observation.received is not None:
                COLLECTED.labels(observation.received.currency).inc(observation.received.amount_minor)
            log.info("payment attempt moved", extra={"before": step.before.value, "after": step.after.value})
        return len(steps)


def _count(cause: Cause, outcome: Outcome) -> Outcome:
    RECONCILED.labels(cause.source, outcome.value).inc()
    return outcome
