"""Composition of the agent: the offline model; inbound messages, order and payment notices, hand-backs."""

from schemas.topics import CHANNEL_INBOUND, HANDOFF_EVENTS, ORDERS_EVENTS, PAYMENTS_EVENTS
from sellmesh.service import MeshContext, ServiceParts
from services.agent.burst import BurstBuffer
from services.agent.handback import Handback
from services.agent.model_call import ModelChoice
from services.agent.notices import Notices
from services.agent.offline_model import register, warm_up
from services.agent.responder import Responder
from services.agent.scheduler import BurstScheduler


def build(ctx: MeshContext) -> ServiceParts:
    register()
    settings = ctx.settings
    choice = ModelChoice(
        model=settings.llm_model,
        fallbacks=[m.strip() for m in settings.llm_fallback_models.split(",") if m.strip()],
        timeout=settings.llm_timeout_seconds,
    )
    buffer = BurstBuffer(
        ctx.redis, quiet_seconds=settings.agent_quiet_seconds, seen_ttl_seconds=settings.sellmesh_dedup_ttl_seconds
    )
    responder = Responder(engine=ctx.engine, redis=ctx.redis, broker=ctx.broker, buffer=buffer, choice=choice)
    scheduler = BurstScheduler(buffer=buffer, responder=responder)
    # The buffer marks each message's event id in the same step that buffers it, so no Redis dedup around it.
    ctx.subscribe(CHANNEL_INBOUND, group="agent", name="inbound_message", handler=responder.on_inbound, idempotent=True)
    notices = Notices(redis=ctx.redis, broker=ctx.broker)
    ctx.subscribe(ORDERS_EVENTS, group="agent", name="order_event", handler=notices.on_order_event)
    ctx.subscribe(PAYMENTS_EVENTS, group="agent", name="payment_event", handler=notices.on_payment_event)
    handback = Handback(engine=ctx.engine, redis=ctx.redis, buffer=buffer)
    ctx.subscribe(HANDOFF_EVENTS, group="agent", name="handoff_event", handler=handback.on_handoff_event)
    return ServiceParts(name="agent", on_start=[warm_up, scheduler.start], on_stop=[scheduler.stop])
