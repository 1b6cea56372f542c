"""The orders store, handlers and query module on SQLite: idempotency, atomicity, stock races and tenant walls."""

import asyncio
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker
from sqlalchemy import Engine, func, update
from sqlmodel import Session, SQLModel, col, select

from schemas.envelope import Actor, ActorKind, Money
from schemas.orders import (
    AddItem,
    CancelOrder,
    CommandRejected,
    CreateDraft,
    FulfilOrder,
    OrderChanged,
    OrderLine,
    OrderState,
    RejectionReason,
    RequestCheckout,
)
from schemas.payments import CheckoutRefused, PaymentDisputed, PaymentExpired, PaymentFailed, PaymentSucceeded
from schemas.topics import ORDERS_COMMANDS, PAYMENTS_EVENTS
from sellmesh.db import make_engine, session_scope
from sellmesh.outbox import OutboxRelay, OutboxRow
from sellmesh.service import MeshContext, derived_id
from sellmesh.subscriber import Handled
from services.orders import app, handlers, query
from services.orders.domain import Action
from services.orders.order import Command, ProductInfo
from services.orders.store import OrderStore, OutOfStock, VersionConflict, upsert_product
from services.orders.tables import AuditRow, LineRow, OrderRow, ProcessedRow, ProductRow

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_TENANT = uuid.UUID("00000000-0000-4000-8000-000000000002")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
HOODIE = Money(amount_minor=4500, currency="EUR")


@pytest.fixture
def orders(engine: Engine) -> handlers.OrderHandlers:
    seed(engine, TENANT, sku="HOOD-M", name="Blue hoodie", price_minor=4500, stock=1)
    seed(engine, TENANT, sku="TEE", name="Red tee", price_minor=1250, stock=None)
    return handlers.OrderHandlers(OrderStore(engine), clock=lambda: NOW)


def seed(
    engine: Engine, tenant_id: uuid.UUID, *, sku: str, name: str, price_minor: int, stock: int | None, **kw: Any
) -> None:
    with session_scope(engine) as session:
        upsert_product(
            session,
            tenant_id=tenant_id,
            sku=sku,
            name=name,
            description=kw.pop("description", ""),
            price_minor=price_minor,
            currency="EUR",
            stock=stock,
            **kw,
        )


def command(
    cls: type[Command],
    order_id: uuid.UUID,
    *,
    actor: ActorKind = ActorKind.AI,
    tenant_id: uuid.UUID = TENANT,
    **fields: Any,
) -> Command:
    return cls(
        event_id=uuid.uuid4(),
        tenant_id=tenant_id,
        correlation_id=uuid.uuid4(),
        occurred_at=NOW,
        producer="test",
        order_id=order_id,
        actor=Actor(kind=actor),
        **fields,
    )


def draft_with(orders: handlers.OrderHandlers, *items: tuple[str, int]) -> uuid.UUID:
    order_id = uuid.uuid4()
    assert isinstance(orders.handle_command(command(CreateDraft, order_id)), OrderChanged)
    for sku, quantity in items:
        assert isinstance(orders.handle_command(command(AddItem, order_id, sku=sku, quantity=quantity)), OrderChanged)
    return order_id


def payment(
    cls: type[PaymentSucceeded | PaymentExpired | PaymentFailed | PaymentDisputed], order_id: uuid.UUID, **fields: Any
) -> Any:
    return cls(
        event_id=uuid.uuid4(),
        tenant_id=TENANT,
        correlation_id=uuid.uuid4(),
        occurred_at=NOW,
        producer="payments",
        order_id=order_id,
        checkout_session_id="cs_test",
        **fields,
    )


def count(engine: Engine, table: type[SQLModel], *where: Any) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(table).where(*where)).one()


def stock_of(engine: Engine, sku: str, tenant_id: uuid.UUID = TENANT) -> int | None:
    with Session(engine) as session:
        query_ = select(ProductRow).where(col(ProductRow.tenant_id) == tenant_id, col(ProductRow.sku) == sku)
        return session.exec(query_).one().stock


def state_of(engine: Engine, order_id: uuid.UUID) -> OrderState:
    snapshot = query.get_order(engine, TENANT, order_id)
    assert snapshot is not None
    return snapshot.state


def test_a_duplicate_command_is_applied_once_and_returns_the_first_outcome(
    engine: Engine, orders: handlers.OrderHandlers
) -> None:
    order_id = draft_with(orders)
    add = command(AddItem, order_id, sku="TEE", quantity=2)
    first = orders.handle_command(add)
    again = orders.handle_command(add)
    assert isinstance(first, OrderChanged)
    assert again == first
    assert first.event_id == derived_id(add.event_id, "outcome")
    snapshot = query.get_order(engine, TENANT, order_id)
    assert snapshot is not None and snapshot.version == 2 and snapshot.lines[0].quantity == 2
    assert count(engine, OutboxRow, col(OutboxRow.payload).contains(str(add.event_id))) == 1
    assert count(engine, AuditRow, col(AuditRow.message_id) == add.event_id) == 1
    assert count(engine, ProcessedRow, col(ProcessedRow.message_id) == add.event_id) == 1


def test_a_redelivered_command_or_payment_is_reported_to_the_subscriber_as_a_duplicate(file_engine: Engine) -> None:
    # The subscriber's path runs the store in a worker thread, so the database is a file the thread shares.
    orders = handlers.OrderHandlers(OrderStore(file_engine), clock=lambda: NOW)
    seed(file_engine, TENANT, sku="HOOD-M", name="Blue hoodie", price_minor=4500, stock=1)
    order_id = draft_with(orders, ("HOOD-M", 1))
    checkout = command(RequestCheckout, order_id)
    paid = payment(PaymentSucceeded, order_id, amount=Money(amount_minor=4500, currency="EUR"))
    assert asyncio.run(orders.on_order_command(checkout)) is None
    assert asyncio.run(orders.on_order_command(checkout)) is Handled.DUPLICATE
    assert asyncio.run(orders.on_payment_event(paid)) is None
    assert asyncio.run(orders.on_payment_event(paid)) is Handled.DUPLICATE


def test_an_outcome_carries_the_envelope_of_its_command(orders: handlers.OrderHandlers) -> None:
    order_id = uuid.uuid4()
    create = command(CreateDraft, order_id)
    outcome = orders.handle_command(create)
    assert outcome is not None
    assert (outcome.tenant_id, outcome.correlation_id, outcome.causation_id) == (
        TENANT,
        create.correlation_id,
        create.event_id,
    )
    assert (outcome.producer, outcome.command_id, outcome.order_id) == ("orders", create.event_id, order_id)


def test_a_rejection_is_audited_and_queued_and_changes_nothing(engine: Engine, orders: handlers.OrderHandlers) -> None:
    order_id = draft_with(orders, ("TEE", 1))
    fulfil = command(FulfilOrder, order_id)
    outcome = orders.handle_command(fulfil)
    assert isinstance(outcome, CommandRejected)
    assert (outcome.reason, outcome.command_type) == (RejectionReason.NOT_PERMITTED_FOR_ACTOR, "fulfil")
    assert state_of(engine, order_id) is OrderState.DRAFT
    assert count(engine, AuditRow, col(AuditRow.reason) == "not_permitted_for_actor") == 1
    with Session(engine) as session:
        row = session.exec(select(OutboxRow).order_by(col(OutboxRow.id).desc())).first()
    assert row is not None and row.topic == "orders.events.v1" and row.key == str(order_id)


def test_state_audit_and_outbox_commit_together_or_not_at_all(
    engine: Engine, orders: handlers.OrderHandlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_outbox(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("outbox unavailable")

    monkeypatch.setattr(handlers, "add_to_outbox", broken_outbox)
    order_id = uuid.uuid4()
    with pytest.raises(RuntimeError):
        orders.handle_command(command(CreateDraft, order_id))
    assert query.get_order(engine, TENANT, order_id) is None
    assert count(engine, ProcessedRow) == count(engine, AuditRow) == count(engine, OutboxRow) == 0


def test_a_command_naming_another_tenants_order_is_rejected_and_leaves_it_untouched(
    engine: Engine, orders: handlers.OrderHandlers
) -> None:
    order_id = draft_with(orders, ("TEE", 1))
    intruder = command(CancelOrder, order_id, actor=ActorKind.OWNER, tenant_id=OTHER_TENANT)
    outcome = orders.handle_command(intruder)
    assert isinstance(outcome, CommandRejected) and outcome.reason is RejectionReason.CROSS_TENANT
    assert outcome.tenant_id == OTHER_TENANT
    assert state_of(engine, order_id) is OrderState.DRAFT


def test_checkout_reserves_stock_and_cancel_releases_it(engine: Engine, orders: handlers.OrderHandlers) -> None:
    order_id = draft_with(orders, ("HOOD-M", 1))
    assert isinstance(orders.handle_command(command(RequestCheckout, order_id)), OrderChanged)
    assert stock_of(engine, "HOOD-M") == 0
    assert isinstance(orders.handle_command(command(CancelOrder, order_id)), OrderChanged)
    assert stock_of(engine, "HOOD-M") == 1


def test_payment_commits_the_reservation_and_is_applied_once(engine: Engine, orders: handlers.OrderHandlers) -> None:
    order_id = draft_with(orders, ("HOOD-M", 1))
    orders.handle_command(command(RequestCheckout, order_id))
    paid = payment(PaymentSucceeded, order_id, amount=Money(amount_minor=4500, currency="EUR"))
    first = orders.handle_payment(paid, Action.MARK_PAID)
    assert isinstance(first, OrderChanged) and first.change == "paid"
    assert first.actor.kind is ActorKind.SYSTEM
    assert orders.handle_payment(paid, Action.MARK_PAID) == first
    assert state_of(engine, order_id) is OrderState.PAID
    assert stock_of(engine, "HOOD-M") == 0
    assert count(engine, AuditRow, col(AuditRow.message_id) == paid.event_id) == 1


def test_an_expired_payment_returns_the_order_to_draft_and_frees_its_stock(
    engine: Engine, orders: handlers.OrderHandlers
) -> None:
    order_id = draft_with(orders, ("HOOD-M", 1))
    orders.handle_command(command(RequestCheckout, order_id))
    outbox_before = count(engine, OutboxRow)
    assert orders.handle_payment(payment(PaymentExpired, order_id), Action.PAYMENT_EXPIRED) is None
    assert state_of(engine, order_id) is OrderState.DRAFT
    assert stock_of(engine, "HOOD-M") == 1
    assert count(engine, OutboxRow) == outbox_before
    assert count(engine, AuditRow, col(AuditRow.action) == "payment_expired") == 1


def test_payment_events_that_do_not_move_an_order_are_ignored(engine: Engine, orders: handlers.OrderHandlers) -> None:
    """A dispute is between the customer's bank and the money, not a change of the order. A failed payment is not
    one of these: it ends the order's checkout (below)."""
    order_id = draft_with(orders, ("HOOD-M", 1))
    orders.handle_command(command(RequestCheckout, order_id))
    orders.handle_payment(payment(PaymentSucceeded, order_id, amount=HOODIE), Action.MARK_PAID)
    before = (count(engine, ProcessedRow), count(engine, OutboxRow))
    asyncio.run(orders.on_payment_event(payment(PaymentDisputed, order_id, amount=HOODIE, reason="fraudulent")))
    assert (count(engine, ProcessedRow), count(engine, OutboxRow)) == before
    assert state_of(engine, order_id) is OrderState.PAID


def test_a_failed_payment_returns_the_order_to_draft_and_frees_its_stock(file_engine: Engine) -> None:
    """A delayed payment that failed leaves its session complete, and a complete session never expires."""
    seed(file_engine, TENANT, sku="HOOD-M", name="Blue hoodie", price_minor=4500, stock=1)
    orders = handlers.OrderHandlers(OrderStore(file_engine), clock=lambda: NOW)
    order_id = draft_with(orders, ("HOOD-M", 1))
    orders.handle_command(command(RequestCheckout, order_id))
    assert stock_of(file_engine, "HOOD-M") == 0
    outbox_before = count(file_engine, OutboxRow)
    failed = payment(PaymentFailed, order_id, reason="async_payment_failed")
    assert asyncio.run(orders.on_payment_event(failed)) is None
    assert asyncio.run(orders.on_payment_event(failed)) is Handled.DUPLICATE
    assert state_of(file_engine, order_id) is OrderState.DRAFT
    assert stock_of(file_engine, "HOOD-M") == 1
    assert count(file_engine, OutboxRow) == outbox_before  # like an expiry, no order event names a return to draft
    assert count(file_engine, AuditRow, col(AuditRow.action) == "payment_failed") == 1


def test_a_checkout_stripe_refused_returns_the_order_to_draft_and_frees_its_stock(file_engine: Engine) -> None:
    """No session was made, so none can ever be paid or expire: the order would hold its stock for ever."""
    seed(file_engine, TENANT, sku="HOOD-M", name="Blue hoodie", price_minor=4500, stock=1)
    orders = handlers.OrderHandlers(OrderStore(file_engine), clock=lambda: NOW)
    order_id = draft_with(orders, ("HOOD-M", 1))
    orders.handle_command(command(RequestCheckout, order_id))
    refused = CheckoutRefused(
        event_id=uuid.uuid4(),
        tenant_id=TENANT,
        correlation_id=uuid.uuid4(),
        occurred_at=NOW,
        producer="payments",
        order_id=order_id,
        order_version=3,
        reason="order has 101 lines; 1 to 100 fit",
    )
    assert asyncio.run(orders.on_payment_event(refused)) is None
    assert state_of(file_engine, order_id) is OrderState.DRAFT
    assert stock_of(file_engine, "HOOD-M") == 1
    assert count(file_engine, AuditRow, col(AuditRow.action) == "payment_failed") == 1


def test_the_second_order_racing_for_the_last_unit_is_rejected_out_of_stock(engine: Engine) -> None:
    seed(engine, TENANT, sku="HOOD-M", name="Blue hoodie", price_minor=4500, stock=1)
    store = StaleCatalogOnce(engine)
    orders = handlers.OrderHandlers(store, clock=lambda: NOW)
    first, second = draft_with(orders, ("HOOD-M", 1)), draft_with(orders, ("HOOD-M", 1))
    assert isinstance(orders.handle_command(command(RequestCheckout, first)), OrderChanged)
    # The second checkout decides on the stock it read before the first one reserved.
    store.stale = {"HOOD-M": ProductInfo(sku="HOOD-M", name="Blue hoodie", price_minor=4500, currency="EUR", stock=1)}
    outcome = orders.handle_command(command(RequestCheckout, second))
    assert isinstance(outcome, CommandRejected) and outcome.reason is RejectionReason.OUT_OF_STOCK
    assert store.stale is None
    assert stock_of(engine, "HOOD-M") == 0
    assert state_of(engine, second) is OrderState.DRAFT


class StaleCatalogOnce(OrderStore):
    """Answers one catalog read with stock as it was, like a transaction that read just before a rival wrote."""

    stale: dict[str, ProductInfo] | None = None

    def load_products(self, session: Session, *, tenant_id: uuid.UUID, skus: Iterable[str]) -> dict[str, ProductInfo]:
        if self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        return super().load_products(session, tenant_id=tenant_id, skus=skus)


def test_concurrent_reservations_never_take_stock_below_zero(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'orders.db'}")
    SQLModel.metadata.create_all(engine)
    seed(engine, TENANT, sku="HOOD-M", name="Blue hoodie", price_minor=4500, stock=5)
    store = OrderStore(engine)
    unit = OrderLine(sku="HOOD-M", name="Blue hoodie", quantity=1, unit_price=Money(amount_minor=4500, currency="EUR"))
    results: list[bool] = []
    start = threading.Barrier(20)

    def reserve() -> None:
        start.wait()
        try:
            with store.transaction() as session:
                store.reserve_stock(session, tenant_id=TENANT, lines=[unit])
            results.append(True)
        except OutOfStock:
            results.append(False)

    threads = [threading.Thread(target=reserve) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 15 + [True] * 5
    assert stock_of(engine, "HOOD-M") == 0
    engine.dispose()


def test_an_update_against_a_moved_version_is_refused(engine: Engine, orders: handlers.OrderHandlers) -> None:
    order_id = draft_with(orders, ("TEE", 1))
    store = OrderStore(engine)
    with pytest.raises(VersionConflict), store.transaction() as session:
        current = store.load_order(session, order_id)
        assert current is not None
        store.save_order(session, current, expected_version=current.version - 1)


def test_an_update_keeps_the_order_s_id_tenant_and_creation_time(
    engine: Engine, orders: handlers.OrderHandlers
) -> None:
    order_id = draft_with(orders)
    later = NOW.replace(hour=13)
    after = handlers.OrderHandlers(OrderStore(engine), clock=lambda: later)
    assert isinstance(after.handle_command(command(AddItem, order_id, sku="TEE", quantity=2)), OrderChanged)
    with Session(engine) as session:
        row = session.get(OrderRow, order_id)
        assert row is not None
        lines = session.exec(select(LineRow).where(col(LineRow.order_id) == order_id)).all()
    assert (row.tenant_id, row.version, row.total_minor) == (TENANT, 2, 2500)
    assert row.created_at.replace(tzinfo=UTC) == NOW
    assert row.updated_at.replace(tzinfo=UTC) == later
    assert [(line.sku, line.quantity, line.unit_price_minor, line.position) for line in lines] == [("TEE", 2, 1250, 0)]


def test_upsert_product_replaces_by_tenant_and_sku(engine: Engine) -> None:
    seed(engine, TENANT, sku="CAP", name="Cap", price_minor=900, stock=3)
    seed(engine, TENANT, sku="CAP", name="Cap v2", price_minor=950, stock=4, attributes={"colour": "red"})
    seed(engine, OTHER_TENANT, sku="CAP", name="Their cap", price_minor=100, stock=1)
    assert count(engine, ProductRow, col(ProductRow.sku) == "CAP") == 2
    [mine] = query.list_products(engine, TENANT)
    assert (mine.name, mine.price, mine.stock, dict(mine.attributes)) == (
        "Cap v2",
        Money(amount_minor=950, currency="EUR"),
        4,
        {"colour": "red"},
    )


@pytest.mark.parametrize(
    "bad", [{"sku": "has space"}, {"currency": "eur"}, {"price_minor": -1}, {"stock": -1}, {"name": ""}]
)
def test_upsert_product_refuses_values_commands_could_not_use(engine: Engine, bad: dict[str, Any]) -> None:
    values: dict[str, Any] = {"sku": "OK", "name": "Ok", "price_minor": 1, "currency": "EUR", "stock": 1, **bad}
    with pytest.raises(ValueError), session_scope(engine) as session:
        upsert_product(session, tenant_id=TENANT, description="", **values)


def test_search_ranks_products_by_how_many_words_they_match(engine: Engine) -> None:
    seed(
        engine,
        TENANT,
        sku="HOOD-BLU-M",
        name="Hoodie",
        price_minor=4500,
        stock=2,
        attributes={"colour": "blue", "size": "M"},
    )
    seed(
        engine,
        TENANT,
        sku="HOOD-RED-M",
        name="Hoodie",
        price_minor=4500,
        stock=2,
        attributes={"colour": "red", "size": "M"},
    )
    seed(engine, TENANT, sku="SCARF-BLU", name="Scarf", price_minor=1500, stock=2, description="A blue wool scarf")
    seed(engine, TENANT, sku="MUG", name="Mug", price_minor=900, stock=None, description="Bored? Have a mug.")
    found = query.search_products(engine, TENANT, "Do you have a BLUE hoodie?")
    assert [p.sku for p in found] == ["HOOD-BLU-M", "HOOD-RED-M", "SCARF-BLU"]
    assert [p.sku for p in query.search_products(engine, TENANT, "blue scarf")] == ["SCARF-BLU", "HOOD-BLU-M"]
    assert [p.sku for p in query.search_products(engine, TENANT, "red")] == ["HOOD-RED-M"]
    assert [p.sku for p in query.search_products(engine, TENANT, "mugs")] == ["MUG"]
    assert [p.sku for p in query.search_products(engine, TENANT, "hood m", limit=1)] == ["HOOD-BLU-M"]


def test_search_sees_only_that_tenants_active_products(engine: Engine) -> None:
    seed(engine, TENANT, sku="HAT", name="Green hat", price_minor=500, stock=1)
    seed(engine, TENANT, sku="HAT-OLD", name="Green hat (old)", price_minor=500, stock=1, active=False)
    seed(engine, OTHER_TENANT, sku="HAT-X", name="Green hat", price_minor=500, stock=1)
    assert [p.sku for p in query.search_products(engine, TENANT, "green hat")] == ["HAT"]
    assert [p.sku for p in query.search_products(engine, OTHER_TENANT, "green hat")] == ["HAT-X"]
    assert query.search_products(engine, uuid.uuid4(), "green hat") == []


def test_empty_search_lists_active_products_by_name(engine: Engine) -> None:
    for sku, name in [("B", "Beanie"), ("A", "Anorak"), ("C", "Cap")]:
        seed(engine, TENANT, sku=sku, name=name, price_minor=100, stock=1)
    assert [p.name for p in query.search_products(engine, TENANT, "  ")] == ["Anorak", "Beanie", "Cap"]
    assert [p.name for p in query.search_products(engine, TENANT, "", limit=2)] == ["Anorak", "Beanie"]


def test_get_order_hides_another_tenants_order(engine: Engine, orders: handlers.OrderHandlers) -> None:
    order_id = draft_with(orders, ("TEE", 3))
    snapshot = query.get_order(engine, TENANT, order_id)
    assert snapshot is not None and snapshot.total == Money(amount_minor=3750, currency="EUR")
    assert query.get_order(engine, OTHER_TENANT, order_id) is None
    assert query.get_order(engine, TENANT, uuid.uuid4()) is None


def test_a_turns_order_and_catalog_are_read_together_within_the_tenant(
    engine: Engine, orders: handlers.OrderHandlers
) -> None:
    seed(engine, OTHER_TENANT, sku="SECRET", name="Other shop's item", price_minor=100, stock=1)
    order_id = draft_with(orders, ("TEE", 1))
    order, catalog = query.order_and_catalog(engine, TENANT, order_id)
    assert order == query.get_order(engine, TENANT, order_id) and order is not None
    assert [p.sku for p in catalog] == [p.sku for p in query.list_products(engine, TENANT)] == ["HOOD-M", "TEE"]
    other_order, other_catalog = query.order_and_catalog(engine, OTHER_TENANT, order_id)
    assert other_order is None and [p.sku for p in other_catalog] == ["SECRET"]
    assert query.order_and_catalog(engine, TENANT, None)[0] is None


def test_the_turn_s_catalog_is_kept_briefly_and_dropped_when_a_product_is_written(
    engine: Engine, orders: handlers.OrderHandlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stock_of_tee(catalog: list[query.ProductView]) -> int | None:
        return next(p.stock for p in catalog if p.sku == "TEE")

    _, first = query.order_and_catalog(engine, TENANT, None)
    assert stock_of_tee(first) is None
    # A reservation changes stock with a Core UPDATE, as this does: the agent's prompt may be that stale, briefly.
    with engine.begin() as connection:
        connection.execute(update(ProductRow).where(col(ProductRow.sku) == "TEE").values(stock=7))
    _, cached = asyncio.run(query.order_and_catalog_async(engine, TENANT, None))
    assert stock_of_tee(cached) is None
    # A product written through the store (an upsert, as a catalog command makes) drops it at once.
    seed(engine, TENANT, sku="CAP", name="Cap", price_minor=900, stock=3)
    _, after = query.order_and_catalog(engine, TENANT, None)
    assert [p.sku for p in after] == ["HOOD-M", "CAP", "TEE"] and stock_of_tee(after) == 7
    # And it is only kept as long as the TTL says.
    monkeypatch.setattr(query._CATALOG, "ttl_seconds", 0.0)
    query._CATALOG.clear()
    query.order_and_catalog(engine, TENANT, None)
    with engine.begin() as connection:
        connection.execute(update(ProductRow).where(col(ProductRow.sku) == "TEE").values(stock=6))
    assert stock_of_tee(query.order_and_catalog(engine, TENANT, None)[1]) == 6


def test_a_catalog_read_between_a_product_s_flush_and_its_commit_is_not_kept(file_engine: Engine) -> None:
    """The flush clears the cache, but a turn reading then still sees the committed catalog, without the product,
    and would keep that for the TTL: the commit clears it again."""
    engine = file_engine
    seed(engine, TENANT, sku="TEE", name="Red tee", price_minor=1250, stock=None)
    with session_scope(engine) as session:
        upsert_product(
            session, tenant_id=TENANT, sku="CAP", name="Cap", description="", price_minor=900, currency="EUR", stock=3
        )
        session.flush()
        _, between = query.order_and_catalog(engine, TENANT, None)
        assert "CAP" not in [p.sku for p in between]
    _, after = query.order_and_catalog(engine, TENANT, None)
    assert "CAP" in [p.sku for p in after]


def test_finds_the_latest_order_of_a_conversation_within_the_tenant(
    engine: Engine, orders: handlers.OrderHandlers
) -> None:
    order_id = uuid.uuid4()
    orders.handle_command(command(CreateDraft, order_id, conversation_id="conv-9"))
    snapshot = query.latest_order_for_conversation(engine, TENANT, "conv-9")
    assert snapshot is not None and snapshot.order_id == order_id
    assert query.latest_order_for_conversation(engine, OTHER_TENANT, "conv-9") is None


class FakeContext:
    """The two things `build` uses from a MeshContext, recorded instead of wired to a broker."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.subscriptions: list[tuple[str, str, str]] = []

    def subscribe(self, topic: str, *, group: str, name: str, handler: Any, idempotent: bool = False) -> None:
        self.subscriptions.append((topic, group, name))

    def relay(self, producer: str) -> OutboxRelay:
        return OutboxRelay(engine=self.engine, broker=KafkaBroker(), producer=producer)


def test_build_subscribes_to_commands_and_payments_and_relays_the_outbox(engine: Engine) -> None:
    ctx = FakeContext(engine)
    parts = app.build(cast(MeshContext, ctx))
    assert ctx.subscriptions == [
        (ORDERS_COMMANDS, "orders", "order_command"),
        (PAYMENTS_EVENTS, "orders", "payment_event"),
    ]
    assert parts.name == "orders" and [r.producer for r in parts.relays] == ["orders"]
