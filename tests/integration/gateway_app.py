"""The gateway's /v1 app over a migrated database and real Redis, with a publisher that records commands."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import InboundMessage, TextContent
from schemas.envelope import Channel, Envelope
from schemas.handoff import HandoffOpened, HandoffReason
from sellmesh.db import session_scope
from services.gateway.activity import record_inbound, record_opening
from services.gateway.admin import connect_channel_account, create_tenant
from services.gateway.api import api_router, openapi_router
from services.gateway.app import make_gateway
from services.gateway.context import Gateway
from services.gateway.outcomes import record_pending
from services.gateway.settings import GatewaySettings
from services.gateway.team import add_member, issue_member_key
from services.ingest.store import MessageLog
from services.orders.store import upsert_product
from services.orders.tables import AuditRow, LineRow, OrderRow
from services.payments.tables import PaymentAttemptRow


@dataclass
class Published:
    """Every command the gateway published, in order."""

    commands: list[tuple[str, Envelope, str]] = field(default_factory=list)
    broker_down: bool = False

    async def __call__(self, topic: str, command: Envelope, key: str) -> None:
        if self.broker_down:
            raise ConnectionError("broker unreachable")
        self.commands.append((topic, command, key))


@dataclass(frozen=True)
class Tenant:
    """A tenant with an owner key, a staff key, and one of everything the API can name."""

    id: uuid.UUID
    owner_key: str
    staff_key: str
    staff_member_id: uuid.UUID
    staff_key_id: uuid.UUID
    order_id: uuid.UUID
    sku: str
    conversation_id: str
    command_id: uuid.UUID
    app_secret: str
    access_token: str


def build_app(gw: Gateway) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(api_router(gw))
    app.include_router(openapi_router(gw))
    return app


@asynccontextmanager
async def gateway_client(
    engine: Engine,
    redis: Redis,
    *,
    rate_limit: int = 100_000,
    max_body_bytes: int = 65536,
    notify_allow_local: bool = False,
) -> AsyncIterator[tuple[httpx.AsyncClient, Published, FastAPI]]:
    published = Published()
    settings = GatewaySettings(
        rate_limit_per_minute=rate_limit, max_body_bytes=max_body_bytes, HANDOFF_NOTIFY_ALLOW_LOCAL=notify_allow_local
    )
    gw = make_gateway(engine=engine, redis=redis, publish_command=published, settings=settings)
    app = build_app(gw)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
        yield client, published, app


def seed_tenant(engine: Engine) -> Tenant:
    """Everything a route can name, for one new tenant (written as the owning services would)."""
    tenant_id, owner_key = create_tenant(engine, name=f"Shop {uuid.uuid4().hex[:6]}")
    staff = add_member(engine, tenant_id, name="Sam", email="sam@example.com", role="staff")
    issued = issue_member_key(engine, tenant_id, staff.id)
    assert issued is not None
    staff_key, staff_plain = issued
    app_secret, access_token = f"appsecret-{uuid.uuid4().hex}", f"EAAtoken{uuid.uuid4().hex}"
    phone = str(uuid.uuid4().int)[:15]
    account_id = connect_channel_account(
        engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=phone,
        app_secret=app_secret,
        verify_token=uuid.uuid4().hex,
        access_token=access_token,
    )
    order_id = uuid.uuid4()
    conversation_id = str(uuid.uuid4())
    sku = f"MUG-{uuid.uuid4().hex[:8]}"  # SKUs are per tenant; a unique one shows whose product answered
    at = datetime.now(UTC) - timedelta(hours=1)
    with session_scope(engine) as session:
        upsert_product(
            session,
            tenant_id=tenant_id,
            sku=sku,
            name="Ceramic mug",
            description="stoneware",
            price_minor=900,
            currency="EUR",
            stock=3,
        )
        session.add(
            OrderRow(
                order_id=order_id,
                tenant_id=tenant_id,
                state="paid",
                version=3,
                conversation_id=conversation_id,
                currency="EUR",
                total_minor=900,
                customer={},
                created_at=at,
                updated_at=at,
            )
        )
        session.flush()
        session.add(
            LineRow(
                tenant_id=tenant_id,
                order_id=order_id,
                position=0,
                sku=sku,
                name="Ceramic mug",
                quantity=1,
                unit_price_minor=900,
                currency="EUR",
            )
        )
        session.add(
            AuditRow(
                tenant_id=tenant_id,
                order_id=order_id,
                message_id=uuid.uuid4(),
                correlation_id=uuid.uuid4(),
                actor_kind="ai",
                action="create_draft",
                outcome="accepted",
                change="draft_created",
                to_state="draft",
                at=at,
            )
        )
        session.add(
            PaymentAttemptRow(
                tenant_id=tenant_id,
                order_id=order_id,
                attempt=1,
                checkout_session_id=f"cs_test_{uuid.uuid4().hex}",
                url="https://pay.example/secret-link",
                amount_minor=900,
                currency="EUR",
                status="paid",
                expires_at=at + timedelta(hours=1),
                created_at=at,
            )
        )
        session.add(
            MessageLog(
                tenant_id=tenant_id,
                channel="whatsapp",
                channel_account_id=account_id,
                conversation_id=conversation_id,
                direction="in",
                channel_message_id=f"wamid.{uuid.uuid4().hex}",
                event_id=uuid.uuid4(),
                kind="text",
                text="one mug please",
            )
        )
    message = InboundMessage(
        event_id=uuid.uuid4(),
        tenant_id=tenant_id,
        correlation_id=uuid.uuid4(),
        occurred_at=at,
        producer="ingest",
        conversation_id=conversation_id,
        channel=Channel.WHATSAPP,
        channel_account_id=str(account_id),
        customer_id="15550001111",
        message_id=f"wamid.{uuid.uuid4().hex}",
        sent_at=at,
        content=TextContent(text="one mug please"),
    )
    record_inbound(engine, message)
    record_opening(
        engine,
        HandoffOpened(
            event_id=uuid.uuid4(),
            tenant_id=tenant_id,
            correlation_id=uuid.uuid4(),
            occurred_at=at,
            producer="handoff",
            conversation_id=conversation_id,
            ticket_id="t-1",
            reason=HandoffReason.CUSTOMER_ASKED,
        ),
    )
    command_id = uuid.uuid4()
    record_pending(
        engine,
        command_id=command_id,
        tenant_id=tenant_id,
        topic="orders",
        command_type="fulfil",
        target=str(order_id),
        actor_kind="owner",
        actor_id="someone",
    )
    return Tenant(
        id=tenant_id,
        owner_key=owner_key,
        staff_key=staff_plain,
        staff_member_id=staff.id,
        staff_key_id=staff_key.id,
        order_id=order_id,
        sku=sku,
        conversation_id=conversation_id,
        command_id=command_id,
        app_secret=app_secret,
        access_token=access_token,
    )


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}
