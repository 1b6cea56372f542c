"""Composition of the payments service: the Stripe gateway, the orders.events subscriber, its outbox relay."""

from schemas.orders import OrderEvent
from schemas.topics import ORDERS_EVENTS
from sellmesh.service import MeshContext, ServiceParts
from services.payments.handlers import on_order_event
from services.payments.stripe_gateway import StripeCheckoutGateway


def build(ctx: MeshContext) -> ServiceParts:
    settings = ctx.settings
    gateway = StripeCheckoutGateway(
        api_key=settings.stripe_secret_key.get_secret_value(), base_url=settings.stripe_base_url, http=ctx.http
    )

    async def on_event(event: OrderEvent) -> None:
        await on_order_event(event, gateway=gateway, engine=ctx.engine)

    ctx.subscribe(ORDERS_EVENTS, group="payments", name="order_event", handler=on_event)
    return ServiceParts(name="payments", relays=[ctx.relay("payments")])
