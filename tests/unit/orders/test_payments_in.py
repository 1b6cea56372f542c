"""Money for an order that will not take it: the order stays as it is; orders asks for a refund and a person."""

import json
import uuid

import pytest
from sqlalchemy import Engine

from schemas.envelope import ActorKind, Money
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import (
    AddItem,
    CancelOrder,
    CommandRejected,
    CreateDraft,
    CustomerDetails,
    OrderState,
    RejectionReason,
    RequestCheckout,
    SetCustomerDetails,
)
from schemas.payments import PaymentExpired, PaymentSucceeded
from schemas.topics import HANDOFF_COMMANDS, ORDERS_EVENTS
from sellmesh.service import derived_id
from services.orders import query
from services.orders.domain import REFUND_REQUIRED, Action
from services.orders.handlers import OrderHandlers
from services.orders.store import OrderStore
from tests.builders import ADDRESS, audited, order_command, payment_fact, queued, upsert_product
from tests.unit.orders.test_store import NOW, OTHER_TENANT, TENANT

PRICE = Money(amount_minor=900, currency="EUR")


@pytest.fixture
def orders(engine: Engine) -> OrderHandlers:
    handlers = OrderHandlers(OrderStore(engine), clock=lambda: NOW)
    handlers.handle_command(upsert_product(TENANT, "MUG", price_minor=900, stock=5))
    return handlers


def checked_out(orders: OrderHandlers, *, with_address: bool = True, conversation: str | None = "conv-1") -> uuid.UUID:
    order_id = uuid.uuid4()
    address = ADDRESS if with_address else None
    orders.handle_command(
        order_command(CreateDraft, TENANT, order_id, conversation_id=conversation, channel_address=address)
    )
    orders.handle_command(order_command(AddItem, TENANT, order_id, sku="MUG", quantity=1))
    orders.handle_command(order_command(RequestCheckout, TENANT, order_id))
    return order_id


def state(engine: Engine, order_id: uuid.UUID) -> OrderState:
    snapshot = query.get_order(engine, TENANT, order_id)
    assert snapshot is not None
    return snapshot.state


def test_a_payment_for_a_cancelled_order_asks_for_a_refund_and_a_person(engine: Engine, orders: OrderHandlers) -> None:
    order_id = checked_out(orders)
    orders.handle_command(order_command(CancelOrder, TENANT, order_id, actor=ActorKind.OWNER))
    paid = payment_fact(PaymentSucceeded, TENANT, order_id, amount=PRICE)
    outcome = orders.handle_payment(paid, Action.MARK_PAID)
    assert isinstance(outcome, CommandRejected)
    assert (outcome.reason, outcome.detail, outcome.command_type) == (
        RejectionReason.ORDER_CLOSED,
        REFUND_REQUIRED,
        "mark_paid",
    )
    assert state(engine, order_id) is OrderState.CANCELLED
    events = dict(queued(engine, paid.event_id))
    assert set(events) == {ORDERS_EVENTS, HANDOFF_COMMANDS}
    handoff = RequestHandoff.model_validate_json(json.dumps(events[HANDOFF_COMMANDS]))
    assert (handoff.reason, handoff.actor.kind, handoff.conversation_id) == (
        HandoffReason.PAYMENT_MISMATCH,
        ActorKind.SYSTEM,
        "conv-1",
    )
    assert (handoff.channel, handoff.channel_account_id, handoff.customer_id) == (
        ADDRESS.channel,
        ADDRESS.channel_account_id,
        ADDRESS.customer_id,
    )
    assert handoff.event_id == derived_id(paid.event_id, "handoff")
    assert str(order_id) in handoff.note
    assert [row.outcome for row in audited(engine, paid.event_id)] == ["rejected"]


def test_a_redelivered_payment_for_a_closed_order_asks_only_once(engine: Engine, orders: OrderHandlers) -> None:
    order_id = checked_out(orders)
    orders.handle_command(order_command(CancelOrder, TENANT, order_id, actor=ActorKind.OWNER))
    paid = payment_fact(PaymentSucceeded, TENANT, order_id, amount=PRICE)
    first = orders.handle_payment(paid, Action.MARK_PAID)
    assert orders.handle_payment(paid, Action.MARK_PAID) == first
    assert len(queued(engine, paid.event_id)) == 2 and len(audited(engine, paid.event_id)) == 1


@pytest.mark.parametrize(
    ("with_address", "conversation"), [(False, "conv-1"), (True, None)], ids=["no-address", "no-conversation"]
)
def test_without_a_way_to_reach_the_customer_only_the_refund_is_asked_for(
    engine: Engine, orders: OrderHandlers, with_address: bool, conversation: str | None
) -> None:
    order_id = checked_out(orders, with_address=with_address, conversation=conversation)
    orders.handle_command(order_command(CancelOrder, TENANT, order_id))
    paid = payment_fact(PaymentSucceeded, TENANT, order_id, amount=PRICE)
    outcome = orders.handle_payment(paid, Action.MARK_PAID)
    assert isinstance(outcome, CommandRejected) and outcome.detail == REFUND_REQUIRED
    assert [topic for topic, _ in queued(engine, paid.event_id)] == [ORDERS_EVENTS]


def test_a_payment_after_the_link_expired_does_not_revive_the_draft(engine: Engine, orders: OrderHandlers) -> None:
    order_id = checked_out(orders)
    orders.handle_payment(payment_fact(PaymentExpired, TENANT, order_id), Action.PAYMENT_EXPIRED)
    paid = payment_fact(PaymentSucceeded, TENANT, order_id, amount=PRICE)
    outcome = orders.handle_payment(paid, Action.MARK_PAID)
    assert isinstance(outcome, CommandRejected) and outcome.reason is RejectionReason.INVALID_TRANSITION
    assert outcome.detail.endswith("refund required")
    assert state(engine, order_id) is OrderState.DRAFT
    assert {topic for topic, _ in queued(engine, paid.event_id)} == {ORDERS_EVENTS, HANDOFF_COMMANDS}


def test_a_payment_naming_another_tenants_order_never_reaches_that_tenants_conversation(
    engine: Engine, orders: OrderHandlers
) -> None:
    order_id = checked_out(orders)
    orders.handle_command(order_command(CancelOrder, TENANT, order_id))
    paid = payment_fact(PaymentSucceeded, OTHER_TENANT, order_id, amount=PRICE)
    outcome = orders.handle_payment(paid, Action.MARK_PAID)
    assert isinstance(outcome, CommandRejected) and outcome.reason is RejectionReason.CROSS_TENANT
    assert [topic for topic, _ in queued(engine, paid.event_id)] == [ORDERS_EVENTS]


def test_a_payment_for_an_order_awaiting_it_still_marks_it_paid_without_a_handoff(
    engine: Engine, orders: OrderHandlers
) -> None:
    order_id = checked_out(orders)
    paid = payment_fact(PaymentSucceeded, TENANT, order_id, amount=PRICE)
    orders.handle_payment(paid, Action.MARK_PAID)
    assert state(engine, order_id) is OrderState.PAID
    assert [topic for topic, _ in queued(engine, paid.event_id)] == [ORDERS_EVENTS]


def test_payments_learns_where_to_reach_the_customer_only_of_the_tenants_reachable_order(
    engine: Engine, orders: OrderHandlers
) -> None:
    reachable = checked_out(orders)
    assert query.order_contact(engine, TENANT, reachable) == query.OrderContact(
        conversation_id="conv-1", address=ADDRESS
    )
    assert query.order_contact(engine, OTHER_TENANT, reachable) is None
    assert query.order_contact(engine, TENANT, checked_out(orders, with_address=False)) is None
    assert query.order_contact(engine, TENANT, checked_out(orders, conversation=None)) is None
    assert query.order_contact(engine, TENANT, uuid.uuid4()) is None


def test_payments_learns_which_checkout_an_order_awaits_payment_for(engine: Engine, orders: OrderHandlers) -> None:
    order_id = checked_out(orders)  # created, item added, checked out: version 3
    assert query.awaited_checkout(engine, TENANT, order_id) == 3
    details = CustomerDetails(name="Ana")
    orders.handle_command(order_command(SetCustomerDetails, TENANT, order_id, details=details))
    assert query.awaited_checkout(engine, TENANT, order_id) == 3  # version 4, the same checkout
    assert query.awaited_checkout(engine, OTHER_TENANT, order_id) is None
    orders.handle_payment(payment_fact(PaymentExpired, TENANT, order_id), Action.PAYMENT_EXPIRED)
    assert query.awaited_checkout(engine, TENANT, order_id) is None  # back in draft at version 5
    orders.handle_command(order_command(RequestCheckout, TENANT, order_id))
    assert query.awaited_checkout(engine, TENANT, order_id) == 6
    orders.handle_command(order_command(CancelOrder, TENANT, order_id))
    assert query.awaited_checkout(engine, TENANT, order_id) is None
    assert query.awaited_checkout(engine, TENANT, uuid.uuid4()) is None
