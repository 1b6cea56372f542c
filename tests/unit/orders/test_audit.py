"""The audit trail: one entry per handled command, readable per order and per tenant, and never rewritten."""

import ast
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine

from schemas.envelope import ActorKind, Money
from schemas.orders import AddItem, CreateDraft, FulfilOrder, RejectionReason, RequestCheckout
from schemas.payments import PaymentSucceeded
from services.orders.domain import Action
from services.orders.handlers import OrderHandlers
from services.orders.query import audit_for_order, audit_for_tenant
from services.orders.store import OrderStore
from tests.builders import order_command, payment_fact, upsert_product
from tests.source_tree import parse_module
from tests.unit.orders.test_store import NOW, OTHER_TENANT, TENANT

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def orders(engine: Engine) -> OrderHandlers:
    return OrderHandlers(OrderStore(engine), clock=lambda: NOW)


def test_the_audit_of_an_order_lists_each_command_oldest_first_with_who_what_and_states(
    engine: Engine, orders: OrderHandlers
) -> None:
    orders.handle_command(upsert_product(TENANT, "MUG", price_minor=900))
    order_id = uuid.uuid4()
    create = order_command(CreateDraft, TENANT, order_id)
    add = order_command(AddItem, TENANT, order_id, sku="MUG", quantity=2)
    checkout = order_command(RequestCheckout, TENANT, order_id)
    fulfil = order_command(FulfilOrder, TENANT, order_id)
    paid = payment_fact(PaymentSucceeded, TENANT, order_id, amount=Money(amount_minor=1800, currency="EUR"))
    for command in (create, add, checkout, fulfil, add):
        orders.handle_command(command)
    orders.handle_payment(paid, Action.MARK_PAID)
    entries = audit_for_order(engine, TENANT, order_id)
    assert [(e.command_type, e.outcome, e.from_state, e.to_state) for e in entries] == [
        ("create_draft", "accepted", None, "draft"),
        ("add_item", "accepted", "draft", "draft"),
        ("request_checkout", "accepted", "draft", "awaiting_payment"),
        ("fulfil", "rejected", "awaiting_payment", "awaiting_payment"),
        ("mark_paid", "accepted", "awaiting_payment", "paid"),
    ]
    assert [e.command_id for e in entries] == [c.event_id for c in (create, add, checkout, fulfil, paid)]
    rejected = entries[3]
    assert (rejected.actor_kind, rejected.actor_id, rejected.reason) == (
        ActorKind.AI,
        "ai",
        RejectionReason.NOT_PERMITTED_FOR_ACTOR,
    )
    assert rejected.correlation_id == fulfil.correlation_id and rejected.at.tzinfo is not None
    assert (entries[-1].actor_kind, entries[-1].actor_id) == (ActorKind.SYSTEM, "payments")
    assert audit_for_order(engine, OTHER_TENANT, order_id) == []


def test_the_audit_of_a_tenant_pages_newest_first_and_shows_no_other_tenant(
    engine: Engine, orders: OrderHandlers
) -> None:
    commands = [upsert_product(TENANT, f"SKU-{i}") for i in range(5)]
    for command in commands:
        orders.handle_command(command)
    orders.handle_command(upsert_product(OTHER_TENANT, "SKU-X"))
    first = audit_for_tenant(engine, TENANT, limit=3)
    second = audit_for_tenant(engine, TENANT, limit=3, before=first[-1].id)
    assert [e.sku for e in first + second] == [f"SKU-{i}" for i in reversed(range(5))]
    assert all(e.order_id is None and e.command_type == "upsert_product" for e in first + second)
    assert audit_for_tenant(engine, TENANT, limit=0) == []


def test_no_code_path_updates_or_deletes_audit_rows() -> None:
    offences = []
    for path in (ROOT / "services").rglob("*.py"):
        for node in ast.walk(parse_module(path)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
                name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                names_audit = any(isinstance(arg, ast.Name) and arg.id == "AuditRow" for arg in node.args)
                if name in {"update", "delete"} and names_audit:
                    offences.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offences == []
