"""Subscribers: order and catalog commands and payment facts in; decision, audit and events out in one transaction."""

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Final

from prometheus_client import Counter
from pydantic import TypeAdapter
from sqlmodel import Session

from schemas.envelope import Actor, ActorKind
from schemas.orders import CatalogChanged, CommandRejected, OrderChanged, OrderEvent, UpsertProduct
from schemas.payments import (
    CheckoutRefused,
    OrderPaymentBase,
    PaymentDisputed,
    PaymentExpired,
    PaymentFailed,
    PaymentLinkCreated,
    PaymentRefunded,
    PaymentSucceeded,
)
from schemas.topics import HANDOFF_COMMANDS, ORDERS_EVENTS
from sellmesh.db import in_thread
from sellmesh.metrics import registry
from sellmesh.outbox import add_to_outbox
from sellmesh.service import now
from sellmesh.subscriber import Handled
from services.orders.catalog import CatalogAccepted, decide_catalog, product_state
from services.orders.domain import Action, decide, decide_payment, products_needed
from services.orders.order import Accepted, Command, Decision, Order, Rejected
from services.orders.outcome import Outcome, Source, catalog_event, outcome_event, refund_handoff
from services.orders.store import Conflict, OrderStore

log = logging.getLogger(__name__)

PAYMENTS_ACTOR: Final = Actor(kind=ActorKind.SYSTEM, id="payments")
# Only these payment facts change an order; link created, disputed and mismatch do not. A checkout Stripe refused
# ends the checkout as a failed payment does.
PAYMENT_FACTS: Final[Mapping[str, Action]] = {
    "paid": Action.MARK_PAID,
    "refunded": Action.MARK_REFUNDED,
    "expired": Action.PAYMENT_EXPIRED,
    "failed": Action.PAYMENT_FAILED,
    "checkout_refused": Action.PAYMENT_FAILED,
}
# A conflict means another worker changed the order or took the stock first: decide again on
# fresh state a few times here before handing the message back to the subscriber's backoff.
# Each lost stock race means a rival took units, so a checkout in a rush for the last few units
# loses at most as many races as units were left.
CONFLICT_ATTEMPTS: Final = 8

PaymentMessage = (
    PaymentLinkCreated
    | PaymentSucceeded
    | PaymentFailed
    | PaymentExpired
    | PaymentRefunded
    | PaymentDisputed
    | CheckoutRefused
)
Incoming = Command | UpsertProduct

_OUTCOMES: Final[TypeAdapter[Outcome]] = TypeAdapter(OrderEvent)

OUTCOMES_PUBLISHED = Counter(
    "sellmesh_orders_outcomes_total",
    "Order events queued for publishing, by type and by change or rejection reason.",
    ["type", "detail"],
    registry=registry,
)
TRANSITIONS = Counter(
    "sellmesh_orders_transitions_total",
    "Accepted order changes, by change and the state the order is in after it.",
    ["change", "state"],
    registry=registry,
)


class OrderHandlers:
    """The orders subscribers. DB work is sync, so it runs off the event loop in one transaction."""

    def __init__(self, store: OrderStore, *, clock: Callable[[], datetime] = now) -> None:
        self.store = store
        self.clock = clock

    async def on_order_command(self, command: Incoming) -> Handled | None:
        _, fresh = await in_thread(self._decide_command, command)
        return None if fresh else Handled.DUPLICATE

    async def on_payment_event(self, event: PaymentMessage) -> Handled | None:
        fact = PAYMENT_FACTS.get(event.type)
        if fact is None:
            return None
        _, fresh = await in_thread(self._decide_payment, event, fact)
        return None if fresh else Handled.DUPLICATE

    def handle_command(self, command: Incoming) -> Outcome | None:
        """Decide and persist one command; a duplicate returns the first outcome and changes nothing."""
        return self._decide_command(command)[0]

    def handle_payment(self, event: OrderPaymentBase, fact: Action) -> Outcome | None:
        """Apply one payment fact as actor system; idempotent by the payment event's id."""
        return self._decide_payment(event, fact)[0]

    def _decide_command(self, command: Incoming) -> tuple[Outcome | None, bool]:
        """The outcome, and False when the command was applied before (a redelivery)."""
        if isinstance(command, UpsertProduct):
            return self._retrying(lambda: self._catalog_once(command))
        return self._retrying(lambda: self._command_once(command))

    def _decide_payment(self, event: OrderPaymentBase, fact: Action) -> tuple[Outcome | None, bool]:
        return self._retrying(lambda: self._payment_once(event, fact))

    def _command_once(self, command: Command) -> tuple[Outcome | None, bool]:
        with self.store.transaction() as session:
            done = self.store.processed(session, tenant_id=command.tenant_id, message_id=command.event_id)
            if done is not None:
                return _parse(done.outcome), False
            order = self.store.load_order(session, command.order_id)
            skus = products_needed(order, command)
            products = self.store.load_products(session, tenant_id=command.tenant_id, skus=skus)
            decision = decide(order, command, products=products, tenant_id=command.tenant_id, now=self.clock())
            action = Action(command.type)
            outcome = self._persist(
                session, command, actor=command.actor, action=action, decision=decision, loaded=order
            )
        return outcome, True

    def _catalog_once(self, command: UpsertProduct) -> tuple[Outcome | None, bool]:
        with self.store.transaction() as session:
            done = self.store.processed(session, tenant_id=command.tenant_id, message_id=command.event_id)
            if done is not None:
                return _parse(done.outcome), False
            current = self.store.load_product(session, tenant_id=command.tenant_id, sku=command.sku)
            decision = decide_catalog(current, command)
            if isinstance(decision, CatalogAccepted):
                self.store.save_product(
                    session, tenant_id=command.tenant_id, product=decision.product, keep_stock=command.keep_stock
                )
            outcome = catalog_event(command, decision, at=self.clock())
            self.store.record(
                session,
                source=command,
                order_id=None,
                sku=command.sku,
                actor=command.actor,
                action=command.type,
                decision=decision,
                current=product_state(current),
                outcome=outcome,
            )
            add_to_outbox(session, topic=ORDERS_EVENTS, event=outcome, key=command.sku)
        return outcome, True

    def _payment_once(self, event: OrderPaymentBase, fact: Action) -> tuple[Outcome | None, bool]:
        with self.store.transaction() as session:
            done = self.store.processed(session, tenant_id=event.tenant_id, message_id=event.event_id)
            if done is not None:
                return _parse(done.outcome), False
            order = self.store.load_order(session, event.order_id)
            decision = decide_payment(order, fact, tenant_id=event.tenant_id, now=self.clock())
            outcome = self._persist(session, event, actor=PAYMENTS_ACTOR, action=fact, decision=decision, loaded=order)
            # Money the order would not take: besides the rejection (the refund request), ask for a person.
            handoff = refund_handoff(event, order, at=self.clock())
            if fact is Action.MARK_PAID and isinstance(decision, Rejected) and handoff is not None:
                add_to_outbox(session, topic=HANDOFF_COMMANDS, event=handoff, key=handoff.conversation_id)
        return outcome, True

    def _persist(
        self,
        session: Session,
        source: Source,
        *,
        actor: Actor,
        action: Action,
        decision: Decision,
        loaded: Order | None,
    ) -> Outcome | None:
        outcome = outcome_event(source, actor=actor, action=action, decision=decision, at=self.clock())
        if isinstance(decision, Accepted):
            self.store.apply(session, decision, expected_version=None if loaded is None else loaded.version)
        self.store.record(
            session,
            source=source,
            order_id=source.order_id,
            actor=actor,
            action=action,
            decision=decision,
            current=None if loaded is None else loaded.state.value,
            outcome=outcome,
        )
        if outcome is not None:
            add_to_outbox(session, topic=ORDERS_EVENTS, event=outcome, key=str(source.order_id))
        return outcome

    def _retrying(self, attempt: Callable[[], tuple[Outcome | None, bool]]) -> tuple[Outcome | None, bool]:
        for _ in range(CONFLICT_ATTEMPTS - 1):
            try:
                return _counted(*attempt())
            except Conflict as exc:
                log.info("conflict; deciding again on fresh state", extra={"conflict": str(exc)})
        return _counted(*attempt())


def _parse(outcome: str | None) -> Outcome | None:
    return None if outcome is None else _OUTCOMES.validate_json(outcome)


def _counted(outcome: Outcome | None, fresh: bool) -> tuple[Outcome | None, bool]:
    """Count what a fresh decision queued; a duplicate's first outcome was counted when it was new."""
    if fresh and isinstance(outcome, OrderChanged | CatalogChanged):
        OUTCOMES_PUBLISHED.labels(outcome.type, outcome.change).inc()
        if isinstance(outcome, OrderChanged):
            TRANSITIONS.labels(outcome.change, outcome.order.state.value).inc()
    elif fresh and isinstance(outcome, CommandRejected):
        OUTCOMES_PUBLISHED.labels(outcome.type, outcome.reason.value).inc()
        log.info("command rejected", extra={"reason": outcome.reason.value, "command_type": outcome.command_type})
    return outcome, fresh
