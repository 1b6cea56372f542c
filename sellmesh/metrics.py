"""Prometheus metrics shared by every worker, and the /metrics endpoint."""

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

# The default registry, so library collectors (process, GC) come along.
registry: CollectorRegistry = REGISTRY

MESSAGES_HANDLED = Counter(
    "sellmesh_messages_handled_total",
    "Messages a handler finished, by outcome (ok, duplicate, dead_lettered, invalid).",
    ["topic", "handler", "outcome"],
    registry=registry,
)
HANDLER_RETRIES = Counter(
    "sellmesh_handler_retries_total",
    "Handler attempts that failed and were retried.",
    ["topic", "handler"],
    registry=registry,
)
HANDLER_SECONDS = Histogram(
    "sellmesh_handler_duration_seconds",
    "Time from receiving a message to finishing it, retries included.",
    ["topic", "handler"],
    registry=registry,
)
WEBHOOKS = Counter(
    "sellmesh_webhooks_total",
    "Webhook requests at the HTTP edge, by source and result.",
    ["source", "result"],
    registry=registry,
)
INGEST_ITEMS_KEPT = Counter(
    "sellmesh_ingest_items_kept_total",
    "Webhook items that could not be routed or read, kept in channel.raw.v1.dlq.",
    registry=registry,
)
OUTBOX_PUBLISHED = Counter(
    "sellmesh_outbox_published_total",
    "Outbox rows relayed to the broker.",
    ["producer"],
    registry=registry,
)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
