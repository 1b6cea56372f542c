"""Composition of the agent: registers the offline model with litellm and subscribes to inbound messages."""

from schemas.topics import CHANNEL_INBOUND, ORDERS_EVENTS, PAYMENTS_EVENTS
from sellmesh.service import MeshContext, ServiceParts
from services.agent.notices import Notices
from services.agent.offline_model import register
from services.agent.responder import Responder


def build(ctx: MeshContext) -> ServiceParts:
    register()
    settings = ctx.settings
    responder = Responder(
        engine=ctx.engine,
        redis=ctx.redis,
        broker=ctx.broker,
        model=settings.llm_model,
        fallbacks=[m.strip() for m in settings.llm_fallback_models.split(",") if m.strip()],
        timeout=settings.llm_timeout_seconds,
    )
    ctx.subscribe(CHANNEL_INBOUND, group="agent", name="inbound_message", handler=responder.on_inbound)
    notices = Notices(redis=ctx.redis, broker=ctx.broker)
    ctx.subscribe(ORDERS_EVENTS, group="agent-order-notices", name="order_event", handler=notices.on_order_event)
    ctx.subscribe(
        PAYMENTS_EVENTS, group="agent-payment-notices", name="payment_event", handler=notices.on_payment_event
    )
    return ServiceParts(name="agent")
