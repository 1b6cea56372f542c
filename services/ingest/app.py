"""Composition of the ingest service: webhook edge, normalizer and sender."""

from schemas.topics import CHANNEL_OUTBOUND, CHANNEL_RAW
from sellmesh.service import MeshContext, ServiceParts
from services.ingest.graph_client import GraphClient
from services.ingest.inbound import Normalizer
from services.ingest.ratelimit import SendRateLimiter
from services.ingest.sender import Sender
from services.ingest.webhook import webhook_router


def build(ctx: MeshContext) -> ServiceParts:
    normalizer = Normalizer(engine=ctx.engine, broker=ctx.broker)
    limiter = SendRateLimiter(
        ctx.redis, rate_per_second=ctx.settings.sellmesh_send_rate_per_second, burst=ctx.settings.sellmesh_send_burst
    )
    graph = GraphClient(ctx.settings.graph_base_url)
    sender = Sender(engine=ctx.engine, redis=ctx.redis, graph=graph, limiter=limiter)
    # Each channel message is recorded once by the `uq_ingest_message` key, and a
    # status becomes an event with a derived id: a redelivered webhook changes nothing, so no Redis dedup.
    ctx.subscribe(CHANNEL_RAW, group="ingest", name="raw_webhook", handler=normalizer.on_raw_webhook, idempotent=True)
    # A finished send is skipped by its `ingest_sends` row, so the sender needs no Redis dedup. Its own group:
    # a send waits out Graph's rate limits and outages, which must not hold back recording what customers write.
    ctx.subscribe(
        CHANNEL_OUTBOUND,
        group="ingest-sender",
        name="outbound_message",
        handler=sender.on_outbound,
        idempotent=True,
        on_give_up=sender.on_give_up,
    )
    # Closed after the consumers stopped: the sends in flight finish on it first.
    return ServiceParts(
        name="ingest", routers=[webhook_router(ctx)], relays=[ctx.relay("ingest")], on_stop=[graph.close]
    )
