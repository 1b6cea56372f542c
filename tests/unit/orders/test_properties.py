"""Random command sequences from random actors, through the real handler and store, never break the order rules.

Each example runs on a fresh in-memory SQLite database. Steps are order commands (some under another
tenant, some with an expected version), payment facts, catalog changes and redeliveries of any earlier
message, so duplicates arrive late and out of order.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func
from sqlmodel import Session, SQLModel, col, select

from schemas.envelope import ActorKind, Money
from schemas.orders import (
    AddItem,
    CancelOrder,
    CatalogChanged,
    CloseOrder,
    CommandRejected,
    CreateDraft,
    CustomerDetails,
    FulfilOrder,
    OrderChanged,
    RefundOrder,
    RemoveItem,
    RequestCheckout,
    SetCustomerDetails,
)
from schemas.payments import PaymentExpired, PaymentRefunded, PaymentSucceeded
from schemas.topics import HANDOFF_COMMANDS, ORDERS_EVENTS
from sellmesh.db import make_engine
from sellmesh.outbox import OutboxRow
from services.orders.domain import TERMINAL
from services.orders.handlers import PAYMENT_FACTS, OrderHandlers
from services.orders.order import Order
from services.orders.store import OrderStore
from services.orders.tables import AuditRow, LineRow, OrderRow, ProductRow
from tests.builders import ADDRESS, order_command, payment_fact, upsert_product
from tests.unit.orders.test_store import NOW, OTHER_TENANT, TENANT

K = ActorKind
# Weighted towards what moves an order forward, so examples reach paid, fulfilled and beyond.
ORDER_COMMANDS: list[tuple[type[Any], dict[str, Any]]] = [
    (CreateDraft, {}),
    (CreateDraft, {}),
    (AddItem, {"sku": None, "quantity": None}),
    (AddItem, {"sku": None, "quantity": None}),
    (AddItem, {"sku": None, "quantity": None}),
    (RemoveItem, {"sku": None, "quantity": None}),
    (SetCustomerDetails, {"details": CustomerDetails(name="Ana")}),
    (RequestCheckout, {}),
    (RequestCheckout, {}),
    (CancelOrder, {}),
    (FulfilOrder, {}),
    (CloseOrder, {}),
    (RefundOrder, {}),
]
SKUS = ["MUG", "TEE", "CUP", "OLD", "NOPE"]
# sku -> (price, currency, stock, active) at the start of every example; NOPE is in no catalog.
CATALOG = {"MUG": (900, "EUR", 3, True), "TEE": (1250, "EUR", None, True), "CUP": (500, "USD", 2, True)}
CATALOG["OLD"] = (100, "EUR", 5, False)
HOLDS = {"awaiting_payment", "paid", "fulfilled", "closed"}  # order states whose lines are off the shelf
MONEY_MOVES = {"paid", "fulfilled", "closed", "refunded"}

actors = st.sampled_from([K.AI, K.AI, K.AI, K.OWNER, K.OWNER, K.OWNER, K.STAFF, K.SYSTEM, K.CUSTOMER])
order_steps = st.tuples(
    st.just("order"),
    st.integers(0, len(ORDER_COMMANDS) - 1),
    st.integers(0, 1),
    actors,
    st.sampled_from(SKUS),
    st.integers(1, 4),
    st.sampled_from([None] * 6 + list(range(5))),
    st.sampled_from([TENANT] * 9 + [OTHER_TENANT]),
)
payment_steps = st.tuples(
    st.just("payment"), st.sampled_from(["paid", "paid", "refunded", "expired"]), st.integers(0, 1)
)
catalog_steps = st.tuples(
    st.just("catalog"),
    actors,
    st.sampled_from(SKUS[:4]),
    st.sampled_from([500, 900, 1200]),
    st.sampled_from(["EUR", "EUR", "USD"]),
    st.sampled_from([None, 0, 1, 3]),
    st.booleans(),
)
replay_steps = st.tuples(st.just("replay"), st.integers(0, 1000))
# The next plausible step for an order, by whichever actor: without these, random steps rarely get
# an order past its draft. `choice` picks among the plausible next steps.
progress_steps = st.tuples(st.just("progress"), st.integers(0, 1), actors, st.integers(0, 11))
# Hypothesis merges equal branches of one_of, so weight kinds by index.
KINDS = [order_steps] * 5 + [progress_steps] * 10 + [payment_steps] * 2 + [catalog_steps] * 1 + [replay_steps] * 2
steps = st.lists(st.integers(0, len(KINDS) - 1).flatmap(lambda i: KINDS[i]), min_size=10, max_size=30)


@dataclass
class World:
    engine: Engine
    orders: OrderHandlers
    order_ids: list[uuid.UUID] = field(default_factory=lambda: [uuid.uuid4() for _ in range(2)])
    sent: list[tuple[Any, Any]] = field(default_factory=list)  # every fresh message and its first outcome
    # sku -> units on the shelf plus units held by orders; only a catalog change may move it.
    baseline: dict[str, int | None] = field(default_factory=dict)
    current: dict[uuid.UUID, Order] = field(default_factory=dict)  # the orders after the last step

    def handle(self, message: Any) -> Any:
        if message.type in PAYMENT_FACTS:
            return self.orders.handle_payment(message, PAYMENT_FACTS[message.type])
        return self.orders.handle_command(message)


@contextmanager
def world() -> Iterator[World]:
    engine = make_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    orders = OrderHandlers(OrderStore(engine), clock=lambda: NOW)
    for sku, (price, currency, stock, active) in CATALOG.items():
        orders.handle_command(
            upsert_product(TENANT, sku, price_minor=price, currency=currency, stock=stock, active=active)
        )
    try:
        yield World(engine, orders, baseline={sku: spec[2] for sku, spec in CATALOG.items()})
    finally:
        engine.dispose()


def next_step(w: World, order: int, actor: ActorKind, choice: int) -> Any:
    order_id = w.order_ids[order]
    current = w.current.get(order_id)
    state = None if current is None else current.state.value
    paid = {"amount": Money(amount_minor=100, currency="EUR")}
    plausible: list[tuple[type[Any], dict[str, Any]]] = {
        None: [(CreateDraft, {"conversation_id": "conv-1", "channel_address": ADDRESS})],
        "draft": [(AddItem, {"sku": "MUG", "quantity": 1}), (AddItem, {"sku": "TEE", "quantity": 2})]
        + ([(RequestCheckout, {})] * 2 if current is not None and current.lines else []),
        "awaiting_payment": [(PaymentSucceeded, paid)] * 3 + [(PaymentExpired, {}), (CancelOrder, {})],
        "paid": [(FulfilOrder, {})] * 3 + [(RefundOrder, {}), (PaymentRefunded, paid), (CancelOrder, {})],
        "fulfilled": [(CloseOrder, {}), (RefundOrder, {}), (PaymentRefunded, paid)],
    }.get(state, [(PaymentSucceeded, paid), (CancelOrder, {}), (AddItem, {"sku": "MUG", "quantity": 1})])
    cls, fields = plausible[choice % len(plausible)]
    if cls in (PaymentSucceeded, PaymentExpired, PaymentRefunded):
        return payment_fact(cls, TENANT, order_id, **fields)
    return order_command(cls, TENANT, order_id, actor=actor, **fields)


def message_for(w: World, step: tuple[Any, ...]) -> Any:
    if step[0] == "progress":
        return next_step(w, *step[1:])
    if step[0] == "order":
        _, index, order, actor, sku, quantity, version, tenant = step
        cls, template = ORDER_COMMANDS[index]
        fields = {**template, "expected_version": version}
        if "sku" in template:
            fields.update(sku=sku, quantity=quantity)
        return order_command(cls, tenant, w.order_ids[order], actor=actor, **fields)
    if step[0] == "payment":
        _, fact, order = step
        amount = {"amount": Money(amount_minor=100, currency="EUR")}
        cls = {"paid": PaymentSucceeded, "refunded": PaymentRefunded, "expired": PaymentExpired}[fact]
        return payment_fact(cls, TENANT, w.order_ids[order], **(amount if fact != "expired" else {}))
    _, actor, sku, price, currency, stock, active = step
    return upsert_product(TENANT, sku, actor=actor, price_minor=price, currency=currency, stock=stock, active=active)


def count(w: World, table: Any, *where: Any) -> int:
    with Session(w.engine) as session:
        return int(session.exec(select(func.count()).select_from(table).where(*where)).one())


def orders_now(w: World) -> dict[uuid.UUID, Order]:
    with w.orders.store.transaction() as session:
        loaded = {order_id: w.orders.store.load_order(session, order_id) for order_id in w.order_ids}
    return {order_id: order for order_id, order in loaded.items() if order is not None}


def catalog_now(w: World) -> dict[str, ProductRow]:
    with Session(w.engine) as session:
        return {row.sku: row for row in session.exec(select(ProductRow).where(col(ProductRow.tenant_id) == TENANT))}


def held(w: World, orders: dict[uuid.UUID, Order]) -> dict[str, int]:
    """Units of each SKU off the shelf: in orders holding stock, or shipped and then refunded."""
    with Session(w.engine) as session:
        refunded_after_shipping = select(AuditRow.order_id).where(
            AuditRow.from_state == "fulfilled", AuditRow.to_state == "refunded"
        )
        shipped = set(session.exec(refunded_after_shipping))
    units: dict[str, int] = dict.fromkeys(CATALOG, 0)
    for order in orders.values():
        if order.tenant_id == TENANT and (order.state.value in HOLDS or order.order_id in shipped):
            for line in order.lines:
                units[line.sku] += line.quantity
    return units


def check_exactly_once(w: World, message: Any, outcome: Any, *, fresh: bool, before: tuple[int, int]) -> None:
    audit_rows = count(w, AuditRow, col(AuditRow.message_id) == message.event_id)
    with Session(w.engine) as session:
        caused_by = col(OutboxRow.payload).contains(f'"causation_id":"{message.event_id}"')
        events = list(session.exec(select(OutboxRow).where(caused_by)))
    assert audit_rows == 1
    assert len([row for row in events if row.topic == ORDERS_EVENTS]) == (0 if outcome is None else 1)
    # The only other message a decision queues: a person asked for, about money a closed order will not take.
    handoffs = [row for row in events if row.topic == HANDOFF_COMMANDS]
    assert len(handoffs) == len(events) - (outcome is not None) <= 1
    assert not handoffs or (isinstance(outcome, CommandRejected) and outcome.command_type == "mark_paid")
    if message.type not in PAYMENT_FACTS:
        assert outcome is not None  # every command, accepted or rejected, is answered
    if not fresh:
        assert (count(w, AuditRow), count(w, OutboxRow)) == before


def check_prices(w: World, message: Any, outcome: Any) -> None:
    """A line takes its price from the catalog when it is added; checkout re-reads every line."""
    if not isinstance(outcome, OrderChanged) or outcome.change not in {"item_added", "checkout_requested"}:
        return
    catalog = catalog_now(w)
    for line in outcome.order.lines:
        if outcome.change == "checkout_requested" or line.sku == message.sku:
            assert (line.unit_price.amount_minor, line.unit_price.currency) == (
                catalog[line.sku].price_minor,
                catalog[line.sku].currency,
            )


def check_state(w: World, message: Any, previous: dict[uuid.UUID, Order], now: dict[uuid.UUID, Order]) -> None:
    for order_id, before in previous.items():
        if before.state in TERMINAL:
            assert (now[order_id].state, now[order_id].version) == (before.state, before.version)
    with Session(w.engine) as session:
        for order_id, order in now.items():
            row = session.get(OrderRow, order_id)
            lines = list(session.exec(select(LineRow).where(col(LineRow.order_id) == order_id)))
            assert row is not None and row.total_minor == sum(line.quantity * line.unit_price_minor for line in lines)
            assert order.total_minor == sum(line.quantity * line.unit_price.amount_minor for line in order.lines)
            assert len({line.unit_price.currency for line in order.lines}) <= 1
        new = select(AuditRow).where(AuditRow.outcome == "accepted", AuditRow.message_id == message.event_id)
        accepted = session.exec(new).all()
    for row in accepted:
        assert row.actor_kind != K.CUSTOMER.value
        if row.actor_kind == K.AI.value:
            assert row.change not in MONEY_MOVES
        if row.change == "paid":
            assert row.actor_kind == K.SYSTEM.value
        if row.change == "refunded":  # the payments fact, or the team's refund command (DESIGN's matrix)
            assert row.actor_kind in {K.SYSTEM.value, K.OWNER.value, K.STAFF.value}
        if row.sku is not None:
            assert row.actor_kind in {K.OWNER.value, K.STAFF.value}


def check_stock(w: World, outcome: Any, orders: dict[uuid.UUID, Order]) -> None:
    off_shelf = held(w, orders)
    if isinstance(outcome, CatalogChanged):
        stock = outcome.product.stock
        w.baseline[outcome.product.sku] = None if stock is None else stock + off_shelf[outcome.product.sku]
    for sku, row in catalog_now(w).items():
        assert row.stock is None or row.stock >= 0
        if w.baseline[sku] is not None:
            assert row.stock is not None and row.stock + off_shelf[sku] == w.baseline[sku]


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_random_commands_never_break_the_order_rules(script: list[tuple[Any, ...]]) -> None:
    with world() as w:
        for step in script:
            fresh = step[0] != "replay"
            if not fresh and not w.sent:
                continue
            message, first = (message_for(w, step), None) if fresh else w.sent[step[1] % len(w.sent)]
            before, previous = (count(w, AuditRow), count(w, OutboxRow)), w.current
            outcome = w.handle(message)
            if fresh:
                w.sent.append((message, outcome))
                event(f"{getattr(outcome, 'change', None) or getattr(outcome, 'reason', None)}")
            else:
                assert outcome == first  # a redelivery answers with the first outcome and changes nothing
            check_exactly_once(w, message, outcome, fresh=fresh, before=before)
            assert not isinstance(outcome, CommandRejected) or outcome.causation_id == message.event_id
            w.current = orders_now(w)
            check_prices(w, message, outcome if fresh else None)
            check_state(w, message, previous, w.current)
            check_stock(w, outcome if fresh else None, w.current)
