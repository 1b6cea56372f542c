"""Subscribers: a checkout request becomes a Stripe session, an attempt row and a PaymentLinkCreated; a verified
Stripe event is reconciled against its attempt."""

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from schemas.orders import OrderChanged, OrderEvent
from schemas.payments import PaymentLinkCreated, StripeEventReceived
from schemas.topics import HANDOFF_COMMANDS, PAYMENTS_EVENTS
from sellmesh.db import in_thread, session_scope
from sellmesh.outbox import add_to_outbox
from sellmesh.service import now
from sellmesh.subscriber import Handled, PermanentError
from services.gateway.query import payment_settings
from services.orders.query import awaited_checkout
from services.payments.domain import (
    CheckoutNotPossible,
    CheckoutRequest,
    CheckoutSession,
    CheckoutSettings,
    StripeAccount,
    named_now,
    plan_checkout,
    wants_checkout,
    wants_money_back,
    wants_sessions_closed,
    with_plan,
)
from services.payments.escalation import checkout_handoff
from services.payments.events import checkout_refused, link_created
from services.payments.reconciler import Outcome, Reconciler
from services.payments.refund import refund_collected_attempts
from services.payments.settlement import RANK, AttemptStatus, Cause
from services.payments.store import PaymentAttemptRow, PaymentStore
from services.payments.stripe_event import SESSION_EXPIRED, MalformedEvent, read_event
from services.payments.stripe_gateway import AccountRefused, CheckoutRejected, ServerErrorKept, StripeGateway

log = logging.getLogger(__name__)


def _settings(engine: Engine, tenant_id: uuid.UUID) -> CheckoutSettings:
    view = payment_settings(engine, tenant_id)
    return CheckoutSettings(
        success_url=view.success_url, cancel_url=view.cancel_url, stripe_account=view.stripe_account
    )


def _awaits_payment(engine: Engine, event: OrderChanged) -> bool:
    return awaited_checkout(engine, event.tenant_id, event.order_id) == event.order.version


def _recorded(engine: Engine, request: CheckoutRequest) -> bool:
    with session_scope(engine) as session:
        return PaymentStore(session).attempt(request.tenant_id, request.order_id, request.attempt) is not None


def _keep_plan(engine: Engine, request: CheckoutRequest, requested_at: datetime, now: datetime) -> CheckoutRequest:
    """The request as this attempt's first try asked it (expiry, return URLs, Connect account): committed before
    Stripe is asked, so that a retry, however late and whatever the owner changed since, asks the same account for
    the same session under the same idempotency key (`CheckoutPlanRow`)."""
    urls, account = named_now(request.settings)
    with session_scope(engine) as session:
        plan = PaymentStore(session).keep_checkout_plan(
            request.tenant_id,
            request.order_id,
            request.attempt,
            requested_at=requested_at,
            now=now,
            urls=urls,
            account=account,
        )
    return with_plan(request, plan)


def _move_plan(
    engine: Engine, request: CheckoutRequest, refused: str, requested_at: datetime, now: datetime
) -> CheckoutRequest | None:
    """`request` (with the tenant's settings of now) under the plan moved off the account that `refused` the
    platform, committed before Stripe is asked; None when the tenant still names that account."""
    urls, account = named_now(request.settings)
    with session_scope(engine) as session:
        plan = PaymentStore(session).move_checkout_plan(
            request.tenant_id,
            request.order_id,
            request.attempt,
            refused=StripeAccount(refused),
            requested_at=requested_at,
            now=now,
            urls=urls,
            account=account,
        )
    return None if plan is None else with_plan(request, plan)


def _others(engine: Engine, tenant_id: uuid.UUID, order_id: uuid.UUID, attempt: int) -> list[PaymentAttemptRow]:
    with session_scope(engine) as session:
        return PaymentStore(session).other_attempts(tenant_id, order_id, attempt=attempt)


def _supersede(engine: Engine, row: PaymentAttemptRow) -> None:
    # Committed before Stripe is asked to expire the session, so its expired webhook can never be announced.
    with session_scope(engine) as session:
        if row.id is not None:
            PaymentStore(session).mark_superseded(row.id)


def _record(engine: Engine, link: PaymentLinkCreated, request: CheckoutRequest) -> None:
    # The attempt row, its audit and the event commit together (outbox), or none does and the wrapper retries.
    # `request` is the planned one: its account is the one the session was made in, which later calls must name.
    with session_scope(engine) as session:
        account = request.settings.stripe_account
        if PaymentStore(session).add_attempt(link, attempt=request.attempt, stripe_account=account):
            add_to_outbox(session, topic=PAYMENTS_EVENTS, event=link, key=str(link.order_id))


async def close_open_sessions(
    event: OrderChanged,
    *,
    attempt: int | None,
    gateway: StripeGateway,
    engine: Engine,
    reconciler: Reconciler,
    announce_payment: bool = True,
) -> bool:
    """Expire the order's other open sessions before attempt `attempt` (None: the order was cancelled).

    False when another attempt already took the money, or is taking it (a delayed payment is
    pending), or is newer than this one: then no new link may be made. A session that can no
    longer be expired because the customer paid is settled from what Stripe says, its payment
    announced only with `announce_payment`.
    """
    cause = Cause(event.correlation_id, event.event_id, stripe_event_id=None, source="checkout")
    for row in await in_thread(_others, engine, event.tenant_id, event.order_id, -1 if attempt is None else attempt):
        if attempt is not None and (
            row.attempt > attempt or RANK[AttemptStatus(row.status)] >= RANK[AttemptStatus.PAID]
        ):
            log.info("no new checkout: another attempt is newer or paid", extra={"attempt": row.attempt})
            return False
        if row.status != AttemptStatus.OPEN:
            continue
        if attempt is not None:
            await in_thread(_supersede, engine, row)
        state = await gateway.expire_session(row.checkout_session_id, account=row.stripe_account)
        await reconciler.settle(row, state, cause=cause, announce_payment=announce_payment)
        if state.status == "complete" and attempt is not None:
            log.info("no new checkout: the earlier session completed", extra={"attempt": row.attempt})
            return False
    return True


async def on_order_event(
    event: OrderEvent,
    *,
    gateway: StripeGateway,
    engine: Engine,
    reconciler: Reconciler,
    clock: Callable[[], datetime] = now,
) -> Handled | None:
    """On checkout_requested: create (or, with the same idempotency key, get back) the session and announce it.

    On cancelled: expire the order's open sessions, so a cancelled order cannot be paid. On a person's cancel or
    refund: then give back the money of every attempt that took some.
    """
    try:
        if wants_sessions_closed(event):
            # Closed first: a session the customer paid before the cancel (its webhook not yet reconciled) is
            # found complete here and settled, so the refund below sees the money it holds. That payment is
            # not announced when it goes straight back.
            await close_open_sessions(
                event,
                attempt=None,
                gateway=gateway,
                engine=engine,
                reconciler=reconciler,
                announce_payment=not wants_money_back(event),
            )
        if wants_money_back(event):
            await refund_collected_attempts(event, gateway=gateway, engine=engine, reconciler=reconciler, clock=clock)
    except CheckoutRejected as exc:
        raise PermanentError(str(exc)) from exc
    if not wants_checkout(event):
        return None
    if not await in_thread(_awaits_payment, engine, event):
        # A redelivered or redriven request whose order has moved on (cancelled, paid, back in draft, or
        # checked out again since): a link made now would let the customer pay for what is not on sale.
        log.info(
            "no checkout: the order no longer awaits payment for this request", extra={"order_id": str(event.order_id)}
        )
        return None
    try:
        return await _checkout(event, gateway=gateway, engine=engine, reconciler=reconciler, clock=clock)
    except (CheckoutNotPossible, CheckoutRejected) as exc:
        # Asking again gets the same answer, and the order would await a payment nobody can make, holding its
        # stock. It goes back to draft and a person is asked: the business has it in hand, and nothing on-call
        # could redrive would go differently. Only with no conversation to ask in is the request kept in the DLQ.
        log.warning("checkout refused", extra={"order_id": str(event.order_id), "error": str(exc)[:300]})
        if not await in_thread(_refuse, engine, event, str(exc), clock()):
            raise PermanentError(f"{exc}; no conversation to ask a person in") from exc
        return None


async def _checkout(
    event: OrderChanged,
    *,
    gateway: StripeGateway,
    engine: Engine,
    reconciler: Reconciler,
    clock: Callable[[], datetime],
) -> Handled | None:
    settings = await in_thread(_settings, engine, event.tenant_id)
    request = plan_checkout(event, now=clock(), settings=settings)
    if await in_thread(_recorded, engine, request):
        return Handled.DUPLICATE  # a redelivery after we committed: the link event is already in the outbox
    closed = await close_open_sessions(
        event, attempt=request.attempt, gateway=gateway, engine=engine, reconciler=reconciler
    )
    if not closed:
        return None
    asked = await in_thread(_keep_plan, engine, request, event.occurred_at, clock())
    try:
        session = await _create(gateway, engine, asked, event.occurred_at, clock)
    except AccountRefused as refused:
        # The kept plan's account refused the platform; the business may have moved to another one since.
        moved = await in_thread(_move_plan, engine, request, refused.account, event.occurred_at, clock())
        if moved is None or moved.settings.stripe_account == refused.account:
            raise
        log.info("checkout moved to the tenant's current Connect account", extra={"order_id": str(event.order_id)})
        asked = moved
        session = await _create(gateway, engine, asked, event.occurred_at, clock)
    link = link_created(event, asked, session, at=clock())
    await in_thread(_record, engine, link, asked)
    return None


async def _create(
    gateway: StripeGateway,
    engine: Engine,
    asked: CheckoutRequest,
    requested_at: datetime,
    clock: Callable[[], datetime],
) -> CheckoutSession:
    """The session `asked` makes. After a 5xx, which Stripe would replay to every retry under the same key for a
    day, the plan moves to the next key before the subscriber's retry (`domain.renewed_plan`)."""
    try:
        return await gateway.create_session(asked)
    except ServerErrorKept:
        await in_thread(_renew_plan, engine, asked, requested_at, clock())
        raise


def _renew_plan(engine: Engine, asked: CheckoutRequest, requested_at: datetime, now: datetime) -> None:
    with session_scope(engine) as session:
        PaymentStore(session).renew_checkout_plan(
            asked.tenant_id,
            asked.order_id,
            asked.attempt,
            failed_key=asked.idempotency_key,
            requested_at=requested_at,
            now=now,
        )


def _refuse(engine: Engine, event: OrderChanged, reason: str, at: datetime) -> bool:
    """Whether a person was asked. The fact and the request commit together (outbox); a redelivery queues them
    again under the same ids, which orders and handoff each take once."""
    refused = checkout_refused(event, reason=reason, at=at)
    cause = Cause(event.correlation_id, event.event_id, stripe_event_id=None, source="checkout")
    handoff = checkout_handoff(engine, refused, cause=cause, at=at)
    with session_scope(engine) as session:
        add_to_outbox(session, topic=PAYMENTS_EVENTS, event=refused, key=str(event.order_id))
        if handoff is not None:
            add_to_outbox(session, topic=HANDOFF_COMMANDS, event=handoff, key=handoff.conversation_id)
    return handoff is not None


async def on_stripe_event(event: StripeEventReceived, *, reconciler: Reconciler) -> None:
    """Reconcile the attempt a verified Stripe event is about; one fitting no attempt of its tenant goes to the DLQ."""
    try:
        signal = read_event(json.loads(event.body))
    except (ValueError, MalformedEvent) as exc:
        raise PermanentError(f"stripe event {event.stripe_event_id} unreadable: {exc}") from exc
    if signal is None:
        return
    cause = Cause(event.correlation_id, event.event_id, stripe_event_id=signal.event_id, source="webhook")
    try:
        outcome = await reconciler.reconcile(signal, cause=cause, tenant_id=event.tenant_id)
    except CheckoutRejected as exc:
        raise PermanentError(str(exc)) from exc
    if outcome is Outcome.UNKNOWN and signal.event_type == SESSION_EXPIRED:
        # A session no attempt recorded has lapsed: one a late checkout retry asked for anew left behind
        # (`domain.kept_plan`), whose link never reached anyone. Nothing was owed; nothing to keep.
        log.info("an unrecorded checkout session expired", extra={"stripe_event": signal.event_id})
        return
    if outcome in (Outcome.UNKNOWN, Outcome.REJECTED):
        raise PermanentError(f"stripe event {signal.event_id} ({signal.event_type}): {outcome.value} for this tenant")
