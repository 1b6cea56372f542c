"""Tiny builders for wire messages with random ids, so tests on shared infrastructure never collide."""

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff, ResolveHandoff


def random_tenant_id() -> uuid.UUID:
    return uuid.uuid4()


def envelope(tenant_id: uuid.UUID, **overrides: Any) -> dict[str, Any]:
    event_id = uuid.uuid4()
    fields: dict[str, Any] = {
        "event_id": event_id,
        "tenant_id": tenant_id,
        "correlation_id": event_id,
        "occurred_at": datetime.now(UTC),
        "producer": "test",
    }
    fields.update(overrides)
    return fields


def resolve_command(tenant_id: uuid.UUID, conversation_id: str, **overrides: Any) -> ResolveHandoff:
    return ResolveHandoff(
        **envelope(tenant_id, **overrides), conversation_id=conversation_id, actor=Actor(kind=ActorKind.OWNER)
    )


def handoff_request(tenant_id: uuid.UUID, conversation_id: str, **overrides: Any) -> RequestHandoff:
    return RequestHandoff(
        **envelope(tenant_id, **overrides),
        conversation_id=conversation_id,
        actor=Actor(kind=ActorKind.AI),
        reason=HandoffReason.CUSTOMER_ASKED,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
    )


async def read_topic(bootstrap: str, topic: str, *, timeout_ms: int = 2000) -> list[Any]:
    """Every record on `topic` from the beginning (no consumer group, nothing committed)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        records: list[Any] = []
        while True:
            batch = await consumer.getmany(timeout_ms=timeout_ms)
            if not batch:
                return records
            for part in batch.values():
                records.extend(part)
    finally:
        await consumer.stop()
