"""What a service gets from the runtime (MeshContext) and what it hands back (ServiceParts)."""

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypedDict

import httpx
from fastapi import APIRouter
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.envelope import Envelope
from sellmesh.broker import MeshBroker
from sellmesh.infra import Endpoints
from sellmesh.outbox import OutboxRelay
from sellmesh.settings import MeshSettings
from sellmesh.subscriber import Dedup, GiveUp, Handler, NoDedup, RetryPolicy, Subscription, consume


@dataclass
class MeshContext:
    """Connections built once per process in the composition root and shared by its services."""

    settings: MeshSettings
    endpoints: Endpoints
    broker: MeshBroker
    engine: Engine
    redis: Redis
    dedup: Dedup
    retry: RetryPolicy
    http: httpx.AsyncClient

    # Consumer group -> its subscriptions, until `attach_consumers` gives each group its one consumer.
    subscriptions: dict[str, list[Subscription]] = field(default_factory=dict)

    def subscribe(
        self,
        topic: str,
        *,
        group: str,
        name: str,
        handler: Handler,
        idempotent: bool = False,
        on_give_up: GiveUp | None = None,
    ) -> Subscription:
        """`idempotent`: the handler's own unique keys make a redelivery a no-op, so the Redis dedup is skipped.
        `on_give_up`: called with a message and its last error once it went to the DLQ.

        Subscriptions of one group share one consumer over all their topics (`subscriber.consume`)."""
        dedup = NoDedup() if idempotent else self.dedup
        subscription = Subscription(self.broker, topic, group, name, handler, dedup, self.retry, on_give_up)
        self.subscriptions.setdefault(group, []).append(subscription)
        return subscription

    def attach_consumers(self) -> None:
        for subscriptions in self.subscriptions.values():
            consume(
                self.broker,
                subscriptions,
                consumers=self.settings.kafka_consumers_per_subscription,
                session_timeout_ms=self.settings.kafka_session_timeout_ms,
                fetch_max_wait_ms=self.settings.kafka_fetch_max_wait_ms,
                commit_interval_ms=self.settings.kafka_commit_interval_ms,
            )
        self.subscriptions = {}

    def relay(self, producer: str) -> OutboxRelay:
        return OutboxRelay(engine=self.engine, broker=self.broker, producer=producer)


Hook = Callable[[], Awaitable[None]]
Builder = Callable[[MeshContext], "ServiceParts"]


@dataclass
class ServiceParts:
    name: str
    routers: list[APIRouter] = field(default_factory=list)
    relays: list[OutboxRelay] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)


def build_services(ctx: MeshContext, builders: Iterable[Builder]) -> list[ServiceParts]:
    """Each service's parts, then one consumer per consumer group over what its subscriptions read."""
    parts = [build(ctx) for build in builders]
    ctx.attach_consumers()
    return parts


def now() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


# Ids derived from what caused them: a redelivered cause yields the same id, so every
# downstream dedup-by-event-id sees a duplicate rather than new work.
_DERIVED = uuid.UUID("6b1f3c8e-5a0d-4c59-9d59-2f1e6f0a7c11")


def derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(_DERIVED, "|".join(str(p) for p in parts))


class EnvelopeFields(TypedDict):
    """The envelope of a message, to spread into its constructor."""

    event_id: uuid.UUID
    tenant_id: uuid.UUID
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None
    occurred_at: datetime
    producer: str


def caused_by(cause: Envelope, tag: str, *, producer: str, at: datetime | None = None) -> EnvelopeFields:
    """The envelope fields of a message `cause` led to; its id derives from the cause and `tag`."""
    return EnvelopeFields(
        event_id=derived_id(cause.event_id, tag),
        tenant_id=cause.tenant_id,
        correlation_id=cause.correlation_id,
        causation_id=cause.event_id,
        occurred_at=at if at is not None else now(),
        producer=producer,
    )
