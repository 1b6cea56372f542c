"""Composition of the gateway: the owners' /v1 API and /openapi.json on the shared HTTP port, and the
subscribers that fill its read models (command outcomes, conversations, handoff openings)."""

from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import InboundMessage
from schemas.envelope import Envelope
from schemas.handoff import HandoffEvent, HandoffOpened
from schemas.orders import OrderEvent
from schemas.topics import CHANNEL_INBOUND, HANDOFF_EVENTS, ORDERS_EVENTS
from sellmesh.broker import publish
from sellmesh.db import in_thread
from sellmesh.service import MeshContext, ServiceParts, now
from services.gateway.activity import record_inbound, record_opening
from services.gateway.api import api_router, openapi_router
from services.gateway.auth import Authenticator
from services.gateway.bus import CommandBus, Publish
from services.gateway.context import Gateway
from services.gateway.outcomes import Decision, decide, handoff_decision, order_decision
from services.gateway.problems import problem_route_class
from services.gateway.ratelimit import RateLimiter
from services.gateway.settings import GatewaySettings


def make_gateway(*, engine: Engine, redis: Redis, publish_command: Publish, settings: GatewaySettings) -> Gateway:
    return Gateway(
        engine=engine,
        redis=redis,
        bus=CommandBus(engine, publish_command),
        auth=Authenticator(engine, RateLimiter(redis, limit=settings.rate_limit_per_minute, window_seconds=60)),
        route_class=problem_route_class(
            max_body_bytes=settings.max_body_bytes, notify_allow_local=settings.notify_allow_local
        ),
    )


def build(ctx: MeshContext) -> ServiceParts:
    async def publish_command(topic: str, command: Envelope, key: str) -> None:
        await publish(ctx.broker, topic, command, key=key)

    gw = make_gateway(engine=ctx.engine, redis=ctx.redis, publish_command=publish_command, settings=GatewaySettings())

    async def settle(event: Envelope, decision: Decision | None) -> None:
        if decision is not None:
            await in_thread(lambda: decide(ctx.engine, event.tenant_id, decision, at=now()))

    async def on_order_event(event: OrderEvent) -> None:
        await settle(event, order_decision(event))

    async def on_handoff_event(event: HandoffEvent) -> None:
        if isinstance(event, HandoffOpened):
            await in_thread(record_opening, ctx.engine, event)
        await settle(event, handoff_decision(event))

    async def on_inbound(message: InboundMessage) -> None:
        await in_thread(record_inbound, ctx.engine, message)

    ctx.subscribe(ORDERS_EVENTS, group="gateway", name="order_outcome", handler=on_order_event)
    ctx.subscribe(HANDOFF_EVENTS, group="gateway", name="handoff_event", handler=on_handoff_event)
    ctx.subscribe(CHANNEL_INBOUND, group="gateway", name="conversation", handler=on_inbound)
    return ServiceParts(name="gateway", routers=[api_router(gw), openapi_router(gw)])
