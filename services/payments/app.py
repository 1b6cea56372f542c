"""Composition of the payments service: the Stripe gateway, the checkout subscriber, the webhook edge, the
reconciler on payments.stripe.v1, the sweep, and the outbox relay."""

import logging

from schemas.orders import OrderEvent
from schemas.payments import StripeEventReceived
from schemas.topics import ORDERS_EVENTS, PAYMENTS_STRIPE
from sellmesh.service import MeshContext, ServiceParts
from sellmesh.subscriber import Handled
from services.payments.handlers import on_order_event, on_stripe_event
from services.payments.reconciler import Reconciler
from services.payments.stripe_gateway import StripeCheckoutGateway
from services.payments.sweep import Sweep
from services.payments.webhook import BrokerSink, stripe_webhook_router


def build(ctx: MeshContext) -> ServiceParts:
    settings = ctx.settings
    # stripe-python logs every request at INFO; the reconciler's own logs and metrics say what matters.
    logging.getLogger("stripe").setLevel(logging.WARNING)
    secret = settings.stripe_webhook_signing_secret
    if secret is None:
        raise RuntimeError("STRIPE_WEBHOOK_SECRET is required with a real STRIPE_SECRET_KEY")
    gateway = StripeCheckoutGateway(
        api_key=settings.stripe_secret_key.get_secret_value(), base_url=settings.stripe_base_url, http=ctx.http
    )
    relay = ctx.relay("payments")
    reconciler = Reconciler(stripe=gateway, engine=ctx.engine)
    sweep = Sweep(
        reconciler=reconciler,
        stripe=gateway,
        engine=ctx.engine,
        interval_seconds=settings.payments_sweep_interval_seconds,
        overlap_seconds=settings.payments_sweep_overlap_seconds,
        lookback_seconds=settings.payments_sweep_lookback_seconds,
    )

    async def on_order(event: OrderEvent) -> Handled | None:
        return await on_order_event(event, gateway=gateway, engine=ctx.engine, reconciler=reconciler)

    async def on_stripe(event: StripeEventReceived) -> None:
        await on_stripe_event(event, reconciler=reconciler)

    # Redeliveries are no-ops by design: the checkout by its `payments_attempts` key and Stripe idempotency key,
    # a Stripe event by its recorded id and the status compare-and-set. Two groups: creating a checkout calls
    # Stripe, and a Stripe outage waited out there must not hold back the payments it has already reported.
    ctx.subscribe(ORDERS_EVENTS, group="payments", name="order_event", handler=on_order, idempotent=True)
    ctx.subscribe(PAYMENTS_STRIPE, group="payments-reconciler", name="stripe_event", handler=on_stripe, idempotent=True)
    webhook = stripe_webhook_router(
        secret=secret,
        max_body_bytes=settings.stripe_webhook_max_body_bytes,
        engine=ctx.engine,
        redis=ctx.redis,
        sink=BrokerSink(ctx.broker),
        seen_ttl_seconds=settings.sellmesh_dedup_ttl_seconds,
    )
    return ServiceParts(
        name="payments", routers=[webhook], relays=[relay], on_start=[sweep.start], on_stop=[sweep.stop]
    )
