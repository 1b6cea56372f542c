"""Catalog commands through the orders handler on SQLite: who may change products, audit, outbox, idempotency."""

import uuid

import pytest
from sqlalchemy import Engine

from schemas.envelope import ActorKind
from schemas.orders import (
    AddItem,
    CatalogChanged,
    CommandRejected,
    CreateDraft,
    OrderChanged,
    ProductSnapshot,
    RejectionReason,
    RequestCheckout,
)
from schemas.topics import ORDERS_EVENTS
from services.orders import query
from services.orders.catalog import decide_catalog
from services.orders.handlers import OrderHandlers
from services.orders.order import Rejected
from services.orders.store import OrderStore
from tests.builders import audited, order_command, queued, upsert_product
from tests.unit.orders.test_store import NOW, OTHER_TENANT, TENANT, stock_of


@pytest.fixture
def orders(engine: Engine) -> OrderHandlers:
    return OrderHandlers(OrderStore(engine), clock=lambda: NOW)


def products(engine: Engine, tenant_id: uuid.UUID = TENANT) -> dict[str, query.ProductView]:
    return {p.sku: p for p in query.list_products(engine, tenant_id)}


def test_an_owner_creates_a_product_and_it_is_audited_and_published_keyed_by_sku(
    engine: Engine, orders: OrderHandlers
) -> None:
    command = upsert_product(TENANT, "MUG", price_minor=900, stock=3, attributes={"colour": "blue"})
    outcome = orders.handle_command(command)
    assert isinstance(outcome, CatalogChanged) and outcome.change == "product_created"
    assert outcome.product.sku == "MUG" and outcome.product.price.amount_minor == 900
    assert (outcome.command_id, outcome.causation_id, outcome.actor) == (
        command.event_id,
        command.event_id,
        command.actor,
    )
    view = products(engine)["MUG"]
    assert (view.price.amount_minor, view.stock, dict(view.attributes)) == (900, 3, {"colour": "blue"})
    [(topic, payload)] = queued(engine, command.event_id)
    assert topic == ORDERS_EVENTS and payload["type"] == "catalog_changed"
    [row] = audited(engine, command.event_id)
    assert (row.order_id, row.sku, row.action, row.outcome, row.change) == (
        None,
        "MUG",
        "upsert_product",
        "accepted",
        "product_created",
    )
    assert (row.from_state, row.to_state, row.actor_kind) == (None, "active", "owner")


def test_staff_updates_a_product_and_the_audit_says_what_changed(engine: Engine, orders: OrderHandlers) -> None:
    orders.handle_command(upsert_product(TENANT, "MUG", price_minor=900, stock=3))
    update = upsert_product(TENANT, "MUG", actor=ActorKind.STAFF, price_minor=1100, stock=7, active=False)
    outcome = orders.handle_command(update)
    assert isinstance(outcome, CatalogChanged) and outcome.change == "product_updated"
    [row] = audited(engine, update.event_id)
    assert (row.from_state, row.to_state) == ("active", "inactive")
    assert "price 900 EUR minor units -> 1100 EUR minor units" in row.detail
    assert "stock 3 -> 7" in row.detail and "deactivated" in row.detail
    assert "MUG" not in products(engine) and stock_of(engine, "MUG") == 7


@pytest.mark.parametrize("actor", [ActorKind.AI, ActorKind.SYSTEM, ActorKind.CUSTOMER])
def test_only_owners_and_staff_may_change_the_catalog(engine: Engine, orders: OrderHandlers, actor: ActorKind) -> None:
    orders.handle_command(upsert_product(TENANT, "MUG", price_minor=900, stock=3))
    attempt = upsert_product(TENANT, "MUG", actor=actor, price_minor=1, stock=1000)
    outcome = orders.handle_command(attempt)
    assert isinstance(outcome, CommandRejected)
    assert (outcome.reason, outcome.product_sku, outcome.order_id) == (
        RejectionReason.NOT_PERMITTED_FOR_ACTOR,
        "MUG",
        None,
    )
    assert (products(engine)["MUG"].price.amount_minor, stock_of(engine, "MUG")) == (900, 3)
    [row] = audited(engine, attempt.event_id)
    assert (row.outcome, row.reason, row.sku) == ("rejected", "not_permitted_for_actor", "MUG")
    [(topic, payload)] = queued(engine, attempt.event_id)
    assert (topic, payload["type"]) == (ORDERS_EVENTS, "command_rejected")


def test_a_redelivered_catalog_command_is_applied_once(engine: Engine, orders: OrderHandlers) -> None:
    command = upsert_product(TENANT, "MUG", stock=3)
    first = orders.handle_command(command)
    orders.handle_command(upsert_product(TENANT, "MUG", stock=5))
    assert orders.handle_command(command) == first
    assert stock_of(engine, "MUG") == 5
    assert len(audited(engine, command.event_id)) == len(queued(engine, command.event_id)) == 1


def test_each_tenant_changes_only_its_own_product_of_a_shared_sku(engine: Engine, orders: OrderHandlers) -> None:
    orders.handle_command(upsert_product(TENANT, "MUG", price_minor=900))
    orders.handle_command(upsert_product(OTHER_TENANT, "MUG", price_minor=5))
    assert products(engine)["MUG"].price.amount_minor == 900
    assert products(engine, OTHER_TENANT)["MUG"].price.amount_minor == 5


def test_a_new_price_reaches_a_draft_at_checkout_and_a_deactivated_product_cannot_be_sold(
    engine: Engine, orders: OrderHandlers
) -> None:
    orders.handle_command(upsert_product(TENANT, "MUG", price_minor=900, stock=3))
    orders.handle_command(upsert_product(TENANT, "TEA", price_minor=500, stock=3))
    order_id = uuid.uuid4()
    orders.handle_command(order_command(CreateDraft, TENANT, order_id))
    orders.handle_command(order_command(AddItem, TENANT, order_id, sku="MUG", quantity=2))
    orders.handle_command(upsert_product(TENANT, "MUG", price_minor=1000, stock=3))
    orders.handle_command(upsert_product(TENANT, "TEA", price_minor=500, stock=3, active=False))
    refused = orders.handle_command(order_command(AddItem, TENANT, order_id, sku="TEA", quantity=1))
    assert isinstance(refused, CommandRejected) and refused.reason is RejectionReason.UNKNOWN_PRODUCT
    checkout = orders.handle_command(order_command(RequestCheckout, TENANT, order_id))
    assert isinstance(checkout, OrderChanged) and checkout.order.total.amount_minor == 2000


def test_the_catalog_decision_takes_every_field_from_the_command() -> None:
    command = upsert_product(TENANT, "MUG", price_minor=900, stock=None, description="stoneware", active=False)
    existing = ProductSnapshot(sku="MUG", name="Old", price=command.price, stock=1)
    decision = decide_catalog(existing, command)
    assert not isinstance(decision, Rejected)
    assert decision.product == ProductSnapshot(
        sku="MUG", name=command.name, description="stoneware", price=command.price, stock=None, active=False
    )
    assert (decision.change, decision.previous) == ("product_updated", existing)
