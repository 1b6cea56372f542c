"""Bad commands through the orders handler on migrated SQLite and PostgreSQL: each answered by a typed rejection.

Whatever is wrong with a command (the product, the tenant, the currency, the version, a redelivery),
orders queues exactly one rejection with its reason, audits it once, and leaves orders and stock as
they were. Malformed bytes never reach the handler: the schema refuses them and the subscriber
dead-letters them.
"""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.envelope import ActorKind, Money
from schemas.orders import (
    AddItem,
    CancelOrder,
    CommandRejected,
    CreateDraft,
    OrderSnapshot,
    RejectionReason,
    RemoveItem,
    RequestCheckout,
)
from schemas.payments import PaymentSucceeded
from schemas.registry import adapter_for
from schemas.topics import ORDERS_COMMANDS, ORDERS_EVENTS
from services.orders import query
from services.orders.domain import Action
from services.orders.handlers import OrderHandlers
from services.orders.store import OrderStore
from services.orders.tables import ProductRow
from tests.builders import audited, order_command, payment_fact, queued, upsert_product

pytestmark = pytest.mark.integration

R = RejectionReason


@dataclass
class Shop:
    engine: Engine
    orders: OrderHandlers
    tenant_id: uuid.UUID
    other_tenant_id: uuid.UUID
    order_id: uuid.UUID  # a draft holding one MUG
    other_order_id: uuid.UUID  # the other tenant's draft

    def snapshot(self, tenant_id: uuid.UUID, order_id: uuid.UUID) -> OrderSnapshot | None:
        return query.get_order(self.engine, tenant_id, order_id)

    def stock(self) -> dict[tuple[uuid.UUID, str], int | None]:
        tenants = (self.tenant_id, self.other_tenant_id)
        with Session(self.engine) as session:
            rows = session.exec(select(ProductRow).where(col(ProductRow.tenant_id).in_(tenants)))
            return {(row.tenant_id, row.sku): row.stock for row in rows}


@pytest.fixture
def shop(migrated_engine: Engine) -> Shop:
    tenant_id, other_tenant_id = uuid.uuid4(), uuid.uuid4()
    orders = OrderHandlers(OrderStore(migrated_engine))
    for command in (
        upsert_product(tenant_id, "MUG", price_minor=900, stock=5),
        upsert_product(tenant_id, "OLD", price_minor=100, stock=5, active=False),
        upsert_product(tenant_id, "CUP", price_minor=500, currency="USD", stock=5),
        upsert_product(tenant_id, "GOLD", price_minor=10**10, stock=None),
        upsert_product(other_tenant_id, "THEIRS", price_minor=100, stock=5),
    ):
        orders.handle_command(command)
    order_id, other_order_id = uuid.uuid4(), uuid.uuid4()
    orders.handle_command(order_command(CreateDraft, tenant_id, order_id))
    orders.handle_command(order_command(AddItem, tenant_id, order_id, sku="MUG", quantity=1))
    orders.handle_command(order_command(CreateDraft, other_tenant_id, other_order_id))
    return Shop(migrated_engine, orders, tenant_id, other_tenant_id, order_id, other_order_id)


def add(sku: str, quantity: int = 1) -> Callable[[Shop], Any]:
    return lambda s: order_command(AddItem, s.tenant_id, s.order_id, sku=sku, quantity=quantity)


BAD: dict[str, tuple[Callable[[Shop], Any], RejectionReason]] = {
    "unknown product": (add("NOPE"), R.UNKNOWN_PRODUCT),
    "inactive product": (add("OLD"), R.UNKNOWN_PRODUCT),
    "another tenant's product": (add("THEIRS"), R.UNKNOWN_PRODUCT),
    "another tenant's order": (
        lambda s: order_command(AddItem, s.tenant_id, s.other_order_id, sku="MUG", quantity=1),
        R.CROSS_TENANT,
    ),
    "a draft over another tenant's order": (
        lambda s: order_command(CreateDraft, s.tenant_id, s.other_order_id),
        R.CROSS_TENANT,
    ),
    "cancelling another tenant's order": (
        lambda s: order_command(CancelOrder, s.other_tenant_id, s.order_id, actor=ActorKind.OWNER),
        R.CROSS_TENANT,
    ),
    "mismatched currency": (add("CUP"), R.CURRENCY_MISMATCH),
    "more than the stock": (add("MUG", 5), R.OUT_OF_STOCK),
    "a line beyond a thousand units": (add("MUG", 1000), R.INVALID_TRANSITION),
    "a total beyond the money bound": (add("GOLD", 101), R.INVALID_TRANSITION),
    "removing what is not in the order": (
        lambda s: order_command(RemoveItem, s.tenant_id, s.order_id, sku="CUP", quantity=1),
        R.ITEM_NOT_IN_ORDER,
    ),
    "stale version": (
        lambda s: order_command(RequestCheckout, s.tenant_id, s.order_id, expected_version=1),
        R.STALE_VERSION,
    ),
    "unknown order": (lambda s: order_command(RequestCheckout, s.tenant_id, uuid.uuid4()), R.UNKNOWN_ORDER),
    "the ai changing the catalog": (
        lambda s: upsert_product(s.tenant_id, "MUG", actor=ActorKind.AI, price_minor=1, stock=1000),
        R.NOT_PERMITTED_FOR_ACTOR,
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_command_is_answered_by_one_rejection_and_changes_nothing(shop: Shop, case: str) -> None:
    build, reason = BAD[case]
    command = build(shop)
    before = (shop.snapshot(shop.tenant_id, shop.order_id), shop.snapshot(shop.other_tenant_id, shop.other_order_id))
    stock = shop.stock()
    outcome = shop.orders.handle_command(command)
    assert isinstance(outcome, CommandRejected) and outcome.reason is reason, outcome
    [(topic, payload)] = queued(shop.engine, command.event_id)
    assert (topic, payload["type"], payload["reason"]) == (ORDERS_EVENTS, "command_rejected", reason.value)
    [row] = audited(shop.engine, command.event_id)
    assert (row.outcome, row.reason) == ("rejected", reason.value)
    after = (shop.snapshot(shop.tenant_id, shop.order_id), shop.snapshot(shop.other_tenant_id, shop.other_order_id))
    assert after == before and shop.stock() == stock


def test_a_duplicate_command_gets_the_first_answer_and_is_applied_once(shop: Shop) -> None:
    command = order_command(AddItem, shop.tenant_id, shop.order_id, sku="MUG", quantity=2)
    first = shop.orders.handle_command(command)
    assert shop.orders.handle_command(command) == first
    snapshot = shop.snapshot(shop.tenant_id, shop.order_id)
    assert snapshot is not None and snapshot.lines[0].quantity == 3
    assert len(queued(shop.engine, command.event_id)) == len(audited(shop.engine, command.event_id)) == 1


def test_a_payment_for_an_unknown_order_is_rejected_and_asks_for_a_refund(shop: Shop) -> None:
    paid = payment_fact(PaymentSucceeded, shop.tenant_id, uuid.uuid4(), amount=Money(amount_minor=1, currency="EUR"))
    outcome = shop.orders.handle_payment(paid, Action.MARK_PAID)
    assert isinstance(outcome, CommandRejected) and outcome.reason is R.UNKNOWN_ORDER
    assert outcome.detail.endswith("refund required")
    assert [topic for topic, _ in queued(shop.engine, paid.event_id)] == [ORDERS_EVENTS]


MALFORMED: dict[str, Callable[[dict[str, Any]], None]] = {
    "zero quantity": lambda d: d.update(quantity=0),
    "negative quantity": lambda d: d.update(quantity=-3),
    "huge quantity": lambda d: d.update(quantity=10**9),
    "fractional quantity": lambda d: d.update(quantity=1.5),
    "a price in the command": lambda d: d.update(unit_price={"amount_minor": 1, "currency": "EUR"}),
    "an unknown command type": lambda d: d.update(type="set_price"),
    "no tenant": lambda d: d.pop("tenant_id"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_command_bytes_are_refused_by_the_schema_before_any_handler(case: str) -> None:
    data = order_command(AddItem, uuid.uuid4(), uuid.uuid4(), sku="MUG", quantity=1).model_dump(mode="json")
    MALFORMED[case](data)
    with pytest.raises(ValidationError):
        adapter_for(ORDERS_COMMANDS).validate_json(json.dumps(data))
