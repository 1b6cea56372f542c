"""Builders for the planner tests: a Turn with fixed ids and a small catalog, and order snapshots."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from schemas.envelope import Channel, Money
from schemas.orders import OrderLine, OrderSnapshot, OrderState
from services.agent.tools import Turn

ID_NAMESPACE = uuid.UUID("00000000-0000-4000-8000-00000000feed")
EXISTING_ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
CATALOG = {
    "ESP-1": {"sku": "ESP-1", "name": "Espresso beans", "description": "Dark roast", "price": "12.50 EUR", "stock": 4},
    "MUG-1": {"sku": "MUG-1", "name": "Ceramic mug", "description": "300 ml", "price": "8.00 EUR", "stock": 0},
}


def fixed_id(tag: str) -> uuid.UUID:
    return uuid.uuid5(ID_NAMESPACE, tag)


@pytest.fixture
def make_order() -> Callable[[OrderState], OrderSnapshot]:
    def build(state: OrderState) -> OrderSnapshot:
        line = OrderLine(
            sku="ESP-1", name="Espresso beans", quantity=1, unit_price=Money(amount_minor=1250, currency="EUR")
        )
        return OrderSnapshot(
            order_id=EXISTING_ORDER,
            state=state,
            version=2,
            lines=(line,),
            total=Money(amount_minor=1250, currency="EUR"),
        )

    return build


@pytest.fixture
def make_turn() -> Callable[..., Turn]:
    def build(*, order: OrderSnapshot | None = None, order_id: uuid.UUID | None = None) -> Turn:
        return Turn(
            tenant_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
            correlation_id=uuid.UUID("00000000-0000-4000-8000-000000000002"),
            causation_id=uuid.UUID("00000000-0000-4000-8000-000000000003"),
            conversation_id="conv-1",
            channel=Channel.WHATSAPP,
            channel_account_id="acct-1",
            customer_id="5215550002222",
            now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            order_id=order.order_id if order is not None else order_id,
            order=order,
            catalog=CATALOG,
            new_id=fixed_id,
        )

    return build
