"""Many workers racing to check out the last units, each on its own connection: exactly the stock is sold."""

import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.envelope import ActorKind
from schemas.orders import (
    AddItem,
    CancelOrder,
    CatalogChanged,
    CommandRejected,
    CreateDraft,
    OrderChanged,
    OrderState,
    RejectionReason,
    RequestCheckout,
)
from sellmesh.db import make_engine, run_migrations
from services.orders import query
from services.orders.handlers import OrderHandlers
from services.orders.store import OrderStore
from services.orders.tables import ProductRow
from tests.builders import audited, order_command, queued, upsert_product

pytestmark = pytest.mark.integration

WORKERS = 16


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = request.getfixturevalue("pg_schema_url" if request.param == "postgresql" else "sqlite_url")
    engine = make_engine(url)
    run_migrations(engine)
    yield engine
    engine.dispose()


def stock_of(engine: Engine, tenant_id: uuid.UUID, sku: str) -> int | None:
    with Session(engine) as session:
        where = (col(ProductRow.tenant_id) == tenant_id, col(ProductRow.sku) == sku)
        return session.exec(select(ProductRow).where(*where)).one().stock


def race(orders: OrderHandlers, commands: list[RequestCheckout]) -> list[object]:
    """Each command on its own thread (and so its own pooled connection), released together."""
    start = threading.Barrier(len(commands))
    outcomes: list[object] = []
    failures: list[BaseException] = []

    def work(command: RequestCheckout) -> None:
        start.wait()
        try:
            outcomes.append(orders.handle_command(command))
        except BaseException as exc:  # reported below: a worker must not die silently
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(command,)) for command in commands]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    return outcomes


@pytest.mark.parametrize("units", [1, 3])
def test_racing_checkouts_sell_exactly_the_units_in_stock(engine: Engine, units: int) -> None:
    tenant_id = uuid.uuid4()
    orders = OrderHandlers(OrderStore(engine))
    orders.handle_command(upsert_product(tenant_id, "LAST", price_minor=2500, stock=units))
    order_ids = [uuid.uuid4() for _ in range(WORKERS)]
    for order_id in order_ids:
        orders.handle_command(order_command(CreateDraft, tenant_id, order_id))
        added = orders.handle_command(order_command(AddItem, tenant_id, order_id, sku="LAST", quantity=1))
        assert isinstance(added, OrderChanged)  # adding reserves nothing: every draft holds one unit
    checkouts = [order_command(RequestCheckout, tenant_id, order_id, actor=ActorKind.AI) for order_id in order_ids]
    outcomes = race(orders, checkouts)
    assert len(outcomes) == WORKERS
    won = [o for o in outcomes if isinstance(o, OrderChanged) and o.change == "checkout_requested"]
    lost = Counter(o.reason for o in outcomes if isinstance(o, CommandRejected))
    assert len(won) == units
    assert lost == {RejectionReason.OUT_OF_STOCK: WORKERS - units}
    assert stock_of(engine, tenant_id, "LAST") == 0
    states = Counter(snapshot.state for o in order_ids if (snapshot := query.get_order(engine, tenant_id, o)))
    assert states == {OrderState.AWAITING_PAYMENT: units, OrderState.DRAFT: WORKERS - units}
    for command in checkouts:
        assert len(audited(engine, command.event_id)) == len(queued(engine, command.event_id)) == 1


def test_taking_a_product_off_sale_keeps_the_units_a_checkout_reserved_after_the_product_was_read(
    engine: Engine,
) -> None:
    """The gateway's DELETE reads the product, then sends it back inactive; a checkout reserves units in between.
    Writing the stock it read would hand those units out a second time once the order gave them back."""
    tenant_id = uuid.uuid4()
    orders = OrderHandlers(OrderStore(engine))
    orders.handle_command(upsert_product(tenant_id, "MUG", price_minor=900, stock=5))
    order_id = uuid.uuid4()
    orders.handle_command(order_command(CreateDraft, tenant_id, order_id))
    orders.handle_command(order_command(AddItem, tenant_id, order_id, sku="MUG", quantity=2))
    read_by_gateway = stock_of(engine, tenant_id, "MUG")
    orders.handle_command(order_command(RequestCheckout, tenant_id, order_id))
    off_sale = upsert_product(tenant_id, "MUG", price_minor=900, stock=read_by_gateway, active=False, keep_stock=True)
    changed = orders.handle_command(off_sale)
    assert isinstance(changed, CatalogChanged) and changed.product.stock == 3 and not changed.product.active
    assert stock_of(engine, tenant_id, "MUG") == 3
    orders.handle_command(order_command(CancelOrder, tenant_id, order_id, actor=ActorKind.OWNER))
    assert stock_of(engine, tenant_id, "MUG") == 5  # the two units come back; no more than there are


def test_a_new_stock_figure_replaces_what_is_left_to_sell(engine: Engine) -> None:
    """Without `keep_stock` the owner's figure is the units left to sell from now on, beyond what orders hold."""
    tenant_id = uuid.uuid4()
    orders = OrderHandlers(OrderStore(engine))
    orders.handle_command(upsert_product(tenant_id, "MUG", price_minor=900, stock=5))
    order_id = uuid.uuid4()
    orders.handle_command(order_command(CreateDraft, tenant_id, order_id))
    orders.handle_command(order_command(AddItem, tenant_id, order_id, sku="MUG", quantity=2))
    orders.handle_command(order_command(RequestCheckout, tenant_id, order_id, actor=ActorKind.AI))
    orders.handle_command(upsert_product(tenant_id, "MUG", price_minor=900, stock=10))
    assert stock_of(engine, tenant_id, "MUG") == 10
    orders.handle_command(upsert_product(tenant_id, "NEW", price_minor=900, stock=4, keep_stock=True))
    assert stock_of(engine, tenant_id, "NEW") == 4  # nothing to keep: a new product takes the figure it came with
