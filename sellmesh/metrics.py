"""Prometheus metrics shared by every worker, and the /metrics endpoint.

Label policy (docs/architecture.md, "Metrics and labels"): every label has a small, fixed set of
values. Tenants appear only as their plan `tier`; customer, conversation, order, event and tenant
ids never become labels. `tests/unit/metrics/test_label_policy.py` enforces it.
"""

from contextvars import ContextVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response

from schemas.topics import ALL_TOPICS, dlq_of

# The default registry, so library collectors (process, GC) come along.
registry: CollectorRegistry = REGISTRY

# Which subscriber ("group/handler") or relay ("outbox/producer") is running, so a publish is counted against it.
current_handler: ContextVar[str] = ContextVar("sellmesh_current_handler", default="none")

MESSAGES_CONSUMED = Counter(
    "sellmesh_messages_consumed_total",
    "Messages the subscriber wrapper received, before decoding.",
    ["group", "topic", "handler"],
    registry=registry,
)
MESSAGES_HANDLED = Counter(
    "sellmesh_messages_handled_total",
    "Messages a handler finished, by outcome (ok, duplicate, dead_lettered, invalid).",
    ["group", "topic", "handler", "outcome"],
    registry=registry,
)
HANDLER_RETRIES = Counter(
    "sellmesh_handler_retries_total",
    "Handler attempts that failed and were retried.",
    ["group", "topic", "handler"],
    registry=registry,
)
MESSAGES_DEAD_LETTERED = Counter(
    "sellmesh_messages_dead_lettered_total",
    "Messages written to <topic>.dlq by the subscriber wrapper, by kind (invalid, permanent, exhausted).",
    ["group", "topic", "handler", "kind"],
    registry=registry,
)
MESSAGES_FAILED = Counter(
    "sellmesh_messages_failed_total",
    "Messages left unfinished because Redis or the DLQ publish failed; the broker redelivers them.",
    ["group", "topic", "handler"],
    registry=registry,
)
HANDLER_SECONDS = Histogram(
    "sellmesh_handler_duration_seconds",
    "Time from receiving a message to finishing it, retries included.",
    ["group", "topic", "handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=registry,
)
MESSAGES_PUBLISHED = Counter(
    "sellmesh_messages_published_total",
    "Messages the broker accepted, by topic and where from (group/handler, outbox/producer, or none).",
    ["topic", "handler"],
    registry=registry,
)
PUBLISH_ERRORS = Counter(
    "sellmesh_publish_errors_total",
    "Publishes that raised (broker unreachable, message too large), by topic.",
    ["topic"],
    registry=registry,
)
for _topic in ALL_TOPICS:
    PUBLISH_ERRORS.labels(_topic)  # every topic and its DLQ at zero, so the first error is an increase
    PUBLISH_ERRORS.labels(dlq_of(_topic))
CONSUMER_LAG = Gauge(
    "sellmesh_consumer_lag",
    "Messages between a consumer group's committed offset and the end of the partition.",
    ["group", "topic", "partition"],
    registry=registry,
)
DLQ_MESSAGES = Gauge(
    "sellmesh_dlq_messages",
    "Messages waiting in a dead-letter topic: after the `sellmesh dlq purge` mark, all partitions.",
    ["topic"],
    registry=registry,
)
LAG_READS = Counter(
    "sellmesh_lag_reads_total",
    "Reads of committed and end offsets by the lag collector, by outcome (ok, error).",
    ["outcome"],
    registry=registry,
)
for _outcome in ("ok", "error"):
    LAG_READS.labels(_outcome)  # at zero, so the first failed read is an increase
OUTBOX_PUBLISHED = Counter(
    "sellmesh_outbox_published_total",
    "Outbox rows relayed to the broker.",
    ["producer"],
    registry=registry,
)
OUTBOX_OLDEST_AGE = Gauge(
    "sellmesh_outbox_oldest_age_seconds",
    "Age of the oldest outbox row this process's relay has not published yet (0 when none).",
    ["producer"],
    registry=registry,
)
WEBHOOKS = Counter(
    "sellmesh_webhooks_total",
    "Webhook requests at the HTTP edge, by source, verdict (verified, rejected) and reason.",
    ["source", "verdict", "reason"],
    registry=registry,
)
INGEST_ITEMS_KEPT = Counter(
    "sellmesh_ingest_items_kept_total",
    "Webhook items that could not be routed or read, kept in channel.raw.v1.dlq.",
    registry=registry,
)
INGEST_MESSAGES = Counter(
    "sellmesh_ingest_messages_total",
    "Channel messages logged by the normalizer, by channel and direction (in: from a customer; echo).",
    ["channel", "direction"],
    registry=registry,
)
INGEST_SENDS = Counter(
    "sellmesh_ingest_sends_total",
    "Outbound messages the sender finished, by channel, author (ai, human, system) and status (sent, refused, failed).",
    ["channel", "author", "status"],
    registry=registry,
)
HTTP_REQUESTS = Counter(
    "sellmesh_http_requests_total",
    "HTTP requests, by route template, method and status code.",
    ["route", "method", "status"],
    registry=registry,
)
HTTP_SECONDS = Histogram(
    "sellmesh_http_request_duration_seconds",
    "HTTP request latency, by route template and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=registry,
)


def webhook_verified(source: str, reason: str) -> None:
    WEBHOOKS.labels(source, "verified", reason).inc()


def webhook_rejected(source: str, reason: str) -> None:
    WEBHOOKS.labels(source, "rejected", reason).inc()


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
