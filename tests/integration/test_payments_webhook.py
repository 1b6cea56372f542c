"""POST /webhooks/stripe over a real socket, beside the sandbox, on a migrated database (SQLite and PostgreSQL):
only Stripe-signed, fresh, well-formed events are published, once each, to their tenant; nothing is dropped."""

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from fastapi import APIRouter
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import Session

from schemas.payments import StripeEventReceived
from schemas.topics import PAYMENTS_STRIPE
from sellmesh.db import session_scope
from services.payments.tables import PaymentAttemptRow, StripeEventRow
from services.payments.webhook import stripe_webhook_router
from tests.integration.conftest import KEY, WEBHOOK_SECRET, Sandbox, serve_sandbox

pytestmark = pytest.mark.integration


@dataclass
class FakeSink:
    published: list[tuple[StripeEventReceived, str]] = field(default_factory=list)
    kept: list[tuple[bytes, str, dict[str, str]]] = field(default_factory=list)

    async def publish(self, event: StripeEventReceived, *, key: str) -> None:
        self.published.append((event, key))

    async def keep(self, raw: bytes, *, key: str, headers: dict[str, str]) -> None:
        self.kept.append((raw, key, headers))

    def about(self, stripe_event_id: str) -> list[StripeEventReceived]:
        return [event for event, _ in self.published if event.stripe_event_id == stripe_event_id]


@dataclass
class Edge:
    sandbox: Sandbox
    sink: FakeSink
    engine: Engine

    def post(self, body: bytes, signature: str | None = "sign", **headers: str) -> httpx.Response:
        if signature == "sign":
            headers["stripe-signature"] = sign(body)
        elif signature is not None:
            headers["stripe-signature"] = signature
        return httpx.post(f"{self.sandbox.root}/webhooks/stripe", content=body, headers=headers, timeout=30)

    def recorded(self, stripe_event_id: str) -> StripeEventRow | None:
        with Session(self.engine) as session:
            return session.get(StripeEventRow, stripe_event_id)


def sign(body: bytes, secret: str = WEBHOOK_SECRET, *, at: int | None = None) -> str:
    """Stripe's scheme, written out here rather than borrowed from the code under test."""
    t = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def stripe_event(event_type: str, obj: dict[str, Any]) -> bytes:
    body = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }
    return json.dumps(body).encode()


def session_completed(tenant_id: uuid.UUID | str) -> bytes:
    obj = {"id": f"cs_test_{uuid.uuid4().hex}", "object": "checkout.session", "metadata": {"tenant_id": str(tenant_id)}}
    return stripe_event("checkout.session.completed", obj)


@pytest.fixture(scope="module")
def edge(redis_url: str, migrated_engine: Engine) -> Iterator[Edge]:
    sink = FakeSink()

    def routes(redis: Redis) -> list[APIRouter]:
        router = stripe_webhook_router(
            secret=WEBHOOK_SECRET,
            max_body_bytes=64 * 1024,
            engine=migrated_engine,
            redis=redis,
            sink=sink,
            seen_ttl_seconds=600,
        )
        return [router]

    with serve_sandbox(redis_url, webhooks=True, routes=routes) as sandbox:
        yield Edge(sandbox, sink, migrated_engine)


def test_a_verified_event_is_published_once_keyed_by_its_object_for_the_tenant_in_its_metadata(edge: Edge) -> None:
    tenant_id = uuid.uuid4()
    body = session_completed(tenant_id)
    event = json.loads(body)
    assert edge.post(body).json() == {"status": "accepted"}
    [(published, key)] = [(e, k) for e, k in edge.sink.published if e.stripe_event_id == event["id"]]
    assert (published.tenant_id, key, published.body) == (tenant_id, event["data"]["object"]["id"], body.decode())
    assert published.stripe_event_type == "checkout.session.completed"
    assert edge.post(body).json() == {"status": "duplicate"}
    assert edge.post(body, signature=sign(body, at=int(time.time()) - 5)).json() == {"status": "duplicate"}
    assert len(edge.sink.about(event["id"])) == 1
    recorded = edge.recorded(event["id"])
    assert recorded is not None and (recorded.outcome, recorded.tenant_id) == ("accepted", tenant_id)


@pytest.mark.parametrize(
    ("signature", "reason"),
    [
        (None, "missing_signature"),
        ("t=1,v1=" + "0" * 64, "bad_signature"),
        ("garbage", "bad_signature"),
        ("v1=abc", "bad_signature"),
        ("other-secret", "bad_signature"),
        ("stale", "timestamp_outside_tolerance"),
        ("v0-only", "bad_signature"),
    ],
)
def test_refuses_a_missing_wrong_or_stale_signature_and_publishes_nothing(
    edge: Edge, signature: str | None, reason: str
) -> None:
    body = session_completed(uuid.uuid4())
    header = {
        "other-secret": sign(body, "whsec_someone_else"),
        "stale": sign(body, at=int(time.time()) - 301),
        "v0-only": sign(body).replace("v1=", "v0="),
    }.get(signature or "", signature)
    response = edge.post(body, signature=header)
    assert (response.status_code, response.json()) == (401, {"error": reason})
    assert edge.sink.about(json.loads(body)["id"]) == []
    assert edge.recorded(json.loads(body)["id"]) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b'{"object": "event", "type": "checkout.session.completed"}', "invalid_event"),
        (b'{"id": "evt_1", "object": "list", "type": "x", "data": {"object": {"id": "x"}}}', "invalid_event"),
    ],
    ids=["malformed", "array", "not-utf8", "no-id", "not-an-event"],
)
def test_a_signed_body_that_is_not_a_stripe_event_gets_400(edge: Edge, body: bytes, reason: str) -> None:
    signature = sign(body) if reason != "invalid_json" or body != b"\xff\xfe" else "t=1,v1=00"
    response = edge.post(body, signature=signature)
    assert (response.status_code, response.json()) == (400, {"error": reason})


def test_an_oversized_body_gets_413(edge: Edge) -> None:
    body = stripe_event("checkout.session.completed", {"id": "cs_big", "padding": "x" * 70_000})
    assert edge.post(body).status_code == 413


def test_an_event_type_payments_does_not_handle_is_acknowledged_recorded_and_not_published(edge: Edge) -> None:
    body = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    event_id = json.loads(body)["id"]
    assert edge.post(body).json() == {"status": "ignored"}
    recorded = edge.recorded(event_id)
    assert recorded is not None and (recorded.outcome, recorded.event_type) == ("ignored", "customer.created")
    assert edge.sink.about(event_id) == []
    assert edge.post(body).json() == {"status": "duplicate"}


def test_an_event_no_tenant_can_be_found_for_is_kept_in_the_dlq_with_its_reason(edge: Edge) -> None:
    body = stripe_event("charge.refunded", {"id": "ch_orphan", "object": "charge", "payment_intent": "pi_nobody"})
    event_id = json.loads(body)["id"]
    assert edge.post(body).json() == {"status": "kept"}
    [(raw, key, headers)] = [k for k in edge.sink.kept if k[2]["x-stripe-event-id"] == event_id]
    assert (raw, key, headers["x-error-kind"]) == (body, "ch_orphan", "unresolved_tenant")
    assert headers["x-original-topic"] == PAYMENTS_STRIPE
    recorded = edge.recorded(event_id)
    assert recorded is not None and recorded.outcome == "kept"
    assert edge.sink.about(event_id) == []
    nonsense = session_completed("not-a-uuid")
    assert edge.post(nonsense).json() == {"status": "kept"}


def test_a_charge_without_metadata_is_routed_by_the_attempt_that_owns_its_payment_intent(edge: Edge) -> None:
    tenant_id, intent = uuid.uuid4(), f"pi_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    with session_scope(edge.engine) as session:
        session.add(
            PaymentAttemptRow(
                tenant_id=tenant_id, order_id=uuid.uuid4(), attempt=1, checkout_session_id=f"cs_{uuid.uuid4().hex}",
                url="https://pay", amount_minor=100, currency="EUR", status="paid", expires_at=now + timedelta(hours=1),
                created_at=now, payment_intent_id=intent,
            )
        )  # fmt: skip
    body = stripe_event("charge.dispute.created", {"id": "dp_1", "charge": "ch_1", "payment_intent": intent})
    assert edge.post(body).json() == {"status": "accepted"}
    [published] = edge.sink.about(json.loads(body)["id"])
    assert published.tenant_id == tenant_id


def test_the_sandbox_webhooks_verify_at_the_edge(edge: Edge) -> None:
    tenant_id = uuid.uuid4()
    client = stripe.StripeClient(KEY, base_addresses={"api": edge.sandbox.api}, max_network_retries=0)
    session = client.v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [
                {"quantity": 1, "price_data": {"currency": "eur", "unit_amount": 500, "product_data": {"name": "Tea"}}}
            ],
            "metadata": {"tenant_id": str(tenant_id), "order_id": str(uuid.uuid4())},
        }
    )
    assert edge.sandbox.hook(session.id).status_code == 200  # the sandbox posted its signed event before answering
    [published] = [e for e, key in edge.sink.published if key == session.id]
    assert (published.tenant_id, published.stripe_event_type) == (tenant_id, "checkout.session.completed")
