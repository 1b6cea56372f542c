"""`dlq reingest` publishes, for a body an edge kept, the message that edge publishes when it accepts that body.

Both go through the edge's one builder (`raw_webhook`, `stripe_event_received`); these tests drive the edges'
real routes and compare what reaches the broker. Only what each side picks afresh may differ: for Meta the event
id (a fresh one at the edge, one derived from the dead letter's place on reingest, so that reingesting twice
publishes one message), the correlation id (the event id: a webhook is a first cause), `occurred_at` (when it is
published) and `received_at` (the edge's clock; for a kept body, when the edge kept it). For Stripe only
`occurred_at`: the event id derives from Stripe's, so both sides give it the same one.
"""

import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import httpx
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import RawWebhook
from schemas.envelope import Channel
from schemas.payments import StripeEventReceived
from schemas.topics import CHANNEL_RAW, PAYMENTS_STRIPE, dlq_of
from sellmesh.ops.message import message_of
from sellmesh.ops.reingest import rewrap_meta, rewrap_stripe
from sellmesh.ops.replay import ReplayItem
from sellmesh.service import MeshContext
from sellmesh.settings import MeshSettings
from services.gateway.admin import connect_channel_account, create_tenant
from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import sign
from services.ingest.webhook import keep_unroutable, webhook_router
from services.payments.webhook import BrokerSink, stripe_webhook_router

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEPT_AT_MS = 1_790_000_000_000
APP_SECRET = "app-secret-edges"
STRIPE_SECRET = "whsec_edges"
META_FRESH = {"event_id", "correlation_id", "occurred_at", "received_at"}


class KafkaCapture:
    """The broker's publish, as `sellmesh.broker.publish` and the edges' DLQ writes call it: kept, not sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, dict[str, str]]] = []

    async def publish(self, message: bytes, *, topic: str, key: bytes, headers: dict[str, str], **_: Any) -> None:
        self.sent.append((topic, message, key, headers))


class MetaEdgeContext:
    """What the Meta edge uses from a MeshContext: its settings, the database and the broker."""

    def __init__(self, engine: Engine) -> None:
        self.settings = MeshSettings(meta_app_secret=None)
        self.engine = engine
        self.broker = KafkaCapture()


class SeenMarks:
    """The two calls the Stripe edge makes on Redis, for its marks of events already taken."""

    def __init__(self) -> None:
        self.marks: set[str] = set()

    async def exists(self, name: str) -> int:
        return int(name in self.marks)

    async def set(self, name: str, value: str, *, ex: int) -> bool:
        self.marks.add(name)
        return True


async def post(app: FastAPI, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://edge") as client:
        return await client.post(path, content=body, headers=headers)


def item_headers(item: ReplayItem) -> dict[str, str]:
    return {name: value.decode() for name, value in item.headers}


async def test_reingest_publishes_the_raw_webhook_the_meta_edge_publishes_but_for_its_fresh_id_and_moments(
    file_engine: Engine,
) -> None:
    tenant_id, _ = create_tenant(file_engine, name="Edge shop")
    phone = f"20{uuid.uuid4().int % 10**8}"
    connect_channel_account(
        file_engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=phone,
        app_secret=APP_SECRET,
        verify_token="verify",
        access_token="token",
    )
    raw = encode(whatsapp_text(phone_number_id=phone, customer="15550002", text="is it in stock?"))
    signature = sign(raw, APP_SECRET)
    ctx = MetaEdgeContext(file_engine)
    app = FastAPI()
    app.include_router(webhook_router(cast(MeshContext, ctx)))
    answer = await post(app, "/webhooks/meta", raw, {"x-hub-signature-256": signature})
    assert answer.json() == {"status": "accepted"}
    # The same body as the edge keeps it when no account is connected yet, read back as a dead letter.
    await keep_unroutable(cast(MeshContext, ctx), raw, signature, [phone])
    [(topic, value, key, headers), (dlq, kept, kept_key, kept_headers)] = ctx.broker.sent
    assert dlq == dlq_of(CHANNEL_RAW)
    letter = message_of(
        topic=dlq,
        partition=0,
        offset=7,
        timestamp_ms=KEPT_AT_MS,
        key=kept_key,
        value=kept,
        headers=[(name, text.encode()) for name, text in kept_headers.items()],
    )

    item = rewrap_meta(file_engine, letter, AT)

    assert isinstance(item, ReplayItem)
    assert (item.target, item.key) == (topic, key)
    accepted, reingested = RawWebhook.model_validate_json(value), RawWebhook.model_validate_json(item.value)
    assert reingested.model_dump(exclude=META_FRESH) == accepted.model_dump(exclude=META_FRESH)
    assert (accepted.correlation_id, reingested.correlation_id) == (accepted.event_id, reingested.event_id)
    assert reingested.event_id != accepted.event_id and reingested.received_at == letter.timestamp
    fresh = {"event_id": "", "correlation_id": ""}
    assert {**item_headers(item), **fresh} == {**headers, **fresh}
    # Published without FastStream, the copy still carries the correlation header tools filter on.
    assert item_headers(item)["correlation_id"] == str(reingested.correlation_id)


def stripe_signed(raw: bytes, secret: str, signed_at: int) -> str:
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


async def test_reingest_publishes_the_stripe_event_the_edge_publishes_the_same_but_for_when(
    file_engine: Engine,
) -> None:
    session_id, event_id = f"cs_{uuid.uuid4().hex}", f"evt_{uuid.uuid4().hex}"
    session = {"id": session_id, "object": "checkout.session", "metadata": {"tenant_id": str(uuid.uuid4())}}
    event = {
        "id": event_id,
        "object": "event",
        "type": "checkout.session.completed",
        "created": 1,
        "data": {"object": session},
    }
    raw = json.dumps(event).encode()
    broker = KafkaCapture()
    app = FastAPI()
    app.include_router(
        stripe_webhook_router(
            secret=STRIPE_SECRET,
            max_body_bytes=64 * 1024,
            engine=file_engine,
            redis=cast(Redis, SeenMarks()),
            sink=BrokerSink(cast(KafkaBroker, broker)),
            seen_ttl_seconds=600,
            clock=lambda: AT,
        )
    )
    fresh = stripe_signed(raw, STRIPE_SECRET, int(time.time()))  # the edge takes none older than 300 s
    answer = await post(app, "/webhooks/stripe", raw, {"stripe-signature": fresh})
    assert answer.json() == {"status": "accepted"}
    [(topic, value, key, headers)] = broker.sent
    # As the edge keeps an event it finds no tenant for, signed by Stripe when it came, long before reingest.
    letter = message_of(
        topic=dlq_of(PAYMENTS_STRIPE),
        partition=0,
        offset=0,
        timestamp_ms=KEPT_AT_MS,
        key=session_id.encode(),
        value=raw,
        headers=[
            ("x-error-kind", b"unresolved_tenant"),
            ("x-original-topic", PAYMENTS_STRIPE.encode()),
            ("x-stripe-event-id", event_id.encode()),
            ("x-signature", stripe_signed(raw, STRIPE_SECRET, KEPT_AT_MS // 1000).encode()),
        ],
    )

    item = rewrap_stripe(file_engine, letter, AT, secret=STRIPE_SECRET)

    assert isinstance(item, ReplayItem)
    assert (item.target, item.key, item_headers(item)) == (topic, key, headers)
    # Published at the same moment, the two are the same message, byte for byte.
    assert StripeEventReceived.model_validate_json(item.value) == StripeEventReceived.model_validate_json(value)
    assert item.value == value
