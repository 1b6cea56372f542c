"""Composition root of the orders service: its two subscriptions and its outbox relay."""

from schemas.topics import ORDERS_COMMANDS, PAYMENTS_EVENTS
from sellmesh.service import MeshContext, ServiceParts
from services.orders.handlers import OrderHandlers
from services.orders.outcome import PRODUCER
from services.orders.store import OrderStore

GROUP = "orders"


def build(ctx: MeshContext) -> ServiceParts:
    relay = ctx.relay(PRODUCER)
    handlers = OrderHandlers(OrderStore(ctx.engine))
    # `orders_processed_commands` makes a redelivered command or payment fact return its first outcome.
    ctx.subscribe(
        ORDERS_COMMANDS, group=GROUP, name="order_command", handler=handlers.on_order_command, idempotent=True
    )
    ctx.subscribe(
        PAYMENTS_EVENTS, group=GROUP, name="payment_event", handler=handlers.on_payment_event, idempotent=True
    )
    return ServiceParts(name="orders", relays=[relay])
