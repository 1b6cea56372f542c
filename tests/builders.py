"""Tiny builders for wire messages with random ids, so tests on shared infrastructure never collide."""

import json
import secrets
import string
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.channel import InboundMessage, OutboundMessage, TextContent
from schemas.envelope import Actor, ActorKind, Channel, Money
from schemas.handoff import HandoffReason, RequestHandoff, ResolveHandoff
from schemas.orders import ChannelAddress, OrderCommandBase, UpsertProduct
from schemas.payments import PaymentEventBase
from sellmesh.db import insert_new
from sellmesh.outbox import OutboxRow
from services.handoff.inbox import InboxMessageRow, inbound_values, outbound_values
from services.orders.tables import AuditRow


def unique_label(prefix: str) -> str:
    """A fresh name for something that becomes a metric label (a consumer group, a producer): random letters,
    never digits, so it can not look like an id to the label policy test (seven digits in a row), whatever the draw."""
    return f"{prefix}-{''.join(secrets.choice(string.ascii_lowercase) for _ in range(10))}"


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


def inbound_text(
    tenant_id: uuid.UUID, conversation_id: str, text: str, *, sent_at: datetime | None = None
) -> InboundMessage:
    """A customer's WhatsApp text as the normalizer publishes it, sent now unless `sent_at` says when."""
    return InboundMessage(
        **envelope(tenant_id),
        conversation_id=conversation_id,
        channel=Channel.WHATSAPP,
        channel_account_id=str(uuid.uuid4()),
        customer_id="15550001111",
        message_id=f"wamid.{uuid.uuid4().hex}",
        sent_at=sent_at or datetime.now(UTC),
        content=TextContent(text=text),
    )


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


ADDRESS = ChannelAddress(channel=Channel.WHATSAPP, channel_account_id="acc-1", customer_id="15550001")


def order_command(
    cls: type[Any], tenant_id: uuid.UUID, order_id: uuid.UUID, *, actor: ActorKind = ActorKind.AI, **fields: Any
) -> Any:
    """An order command of type `cls` (an OrderCommandBase) from `actor`, with fresh ids."""
    command = cls(**envelope(tenant_id), order_id=order_id, actor=Actor(kind=actor, id=actor.value), **fields)
    assert isinstance(command, OrderCommandBase)
    return command


def upsert_product(
    tenant_id: uuid.UUID,
    sku: str,
    *,
    actor: ActorKind = ActorKind.OWNER,
    price_minor: int = 1000,
    currency: str = "EUR",
    stock: int | None = 10,
    **fields: Any,
) -> UpsertProduct:
    return UpsertProduct(
        **envelope(tenant_id),
        sku=sku,
        actor=Actor(kind=actor, id=actor.value),
        name=fields.pop("name", f"Product {sku}"),
        price=Money(amount_minor=price_minor, currency=currency),
        stock=stock,
        **fields,
    )


def payment_fact(cls: type[Any], tenant_id: uuid.UUID, order_id: uuid.UUID, **fields: Any) -> Any:
    """A payments.events.v1 message of type `cls` for the order, as payments would publish it."""
    event = cls(**envelope(tenant_id, producer="payments"), order_id=order_id, checkout_session_id="cs_test", **fields)
    assert isinstance(event, PaymentEventBase)
    return event


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


async def committed_offsets(bootstrap: str, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
    """The group's committed offset of each partition, 0 where it has none."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return {tp: max(0, meta.offset) for tp, meta in offsets.items()}


def queued(engine: Engine, cause_id: uuid.UUID) -> list[tuple[str, dict[str, Any]]]:
    """(topic, payload) of every outbox row a handler queued in answer to message `cause_id`."""
    with Session(engine) as session:
        rows = session.exec(select(OutboxRow).where(col(OutboxRow.payload).contains(str(cause_id))))
        payloads = [(row.topic, json.loads(row.payload)) for row in rows]
    return [(topic, payload) for topic, payload in payloads if payload.get("causation_id") == str(cause_id)]


def audited(engine: Engine, message_id: uuid.UUID) -> list[AuditRow]:
    """The audit rows written for the command or payment fact `message_id`."""
    with Session(engine) as session:
        return list(session.exec(select(AuditRow).where(col(AuditRow.message_id) == message_id)))


def record_inbound(engine: Engine, message: InboundMessage) -> None:
    """Seeds the handoff inbox with a customer's message, as the service's inbox subscription would."""
    insert_new(engine, InboxMessageRow(**inbound_values(message)))


def record_outbound(engine: Engine, message: OutboundMessage) -> None:
    """Seeds the handoff inbox with a reply, as the service's inbox subscription would."""
    insert_new(engine, InboxMessageRow(**outbound_values(message)))
