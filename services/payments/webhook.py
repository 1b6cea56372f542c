"""POST /webhooks/stripe: verify Stripe's signature over the raw bytes, route the event to its tenant, publish it.

Answers: 413 over the size cap; 401 without a `Stripe-Signature`, with one that does not verify, or
with a timestamp older than Stripe's 300 s tolerance; 400 for a verified body that is not UTF-8 JSON
shaped like a Stripe event. Everything else gets 200 so Stripe stops retrying: accepted (published
to payments.stripe.v1), duplicate, ignored (a type reconciliation does not handle, recorded), or
kept (no tenant could be found: the bytes go to payments.stripe.v1.dlq).
"""

import json
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Final, Protocol

import stripe
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from faststream.kafka import KafkaBroker
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from schemas.payments import StripeEventReceived
from schemas.topics import PAYMENTS_STRIPE, dlq_of
from sellmesh.broker import publish
from sellmesh.db import in_thread, session_scope
from sellmesh.metrics import webhook_rejected, webhook_verified
from sellmesh.service import derived_id, now
from services.payments.domain import PRODUCER
from services.payments.store import PaymentStore
from services.payments.stripe_event import MalformedEvent, StripeSignal, event_identity, read_event
from services.payments.tables import StripeEventRow

log = logging.getLogger(__name__)

TOLERANCE_SECONDS: Final = stripe.Webhook.DEFAULT_TOLERANCE  # 300 s, Stripe's own default
BODY_LIMIT: Final = 1_048_576  # what StripeEventReceived.body can carry
SEEN_PREFIX: Final = "payments:stripe-seen:"


class StripeEventSink(Protocol):
    async def publish(self, event: StripeEventReceived, *, key: str) -> None: ...

    async def keep(self, raw: bytes, *, key: str, headers: dict[str, str]) -> None: ...


class BrokerSink:
    def __init__(self, broker: KafkaBroker) -> None:
        self.broker = broker

    async def publish(self, event: StripeEventReceived, *, key: str) -> None:
        await publish(self.broker, PAYMENTS_STRIPE, event, key=key)

    async def keep(self, raw: bytes, *, key: str, headers: dict[str, str]) -> None:
        await self.broker.publish(raw, topic=dlq_of(PAYMENTS_STRIPE), key=key.encode(), headers=headers)


def tenant_of(engine: Engine, signal: StripeSignal) -> uuid.UUID | None:
    """Which tenant a Stripe event is for: the one in its metadata, else the one whose attempt owns its session or
    PaymentIntent (a charge's events carry no metadata of ours). The edge routes by it, and so does
    `sellmesh dlq reingest` for an event the edge kept."""
    if signal.tenant_id is not None:
        return signal.tenant_id
    with session_scope(engine) as session:
        store = PaymentStore(session)
        row = store.by_session(signal.session_id) if signal.session_id else None
        row = row or (store.by_payment_intent(signal.payment_intent) if signal.payment_intent else None)
        return None if row is None else row.tenant_id


def stripe_event_received(
    tenant_id: uuid.UUID, text: str, *, event_id: str, event_type: str, object_id: str, occurred_at: datetime
) -> tuple[StripeEventReceived, str]:
    """The payments.stripe.v1 message for a verified event of `tenant_id`, and its Kafka key.

    `event_id`, `event_type` and `object_id` are the event's identity (`event_identity`). The edge publishes it,
    and so does `sellmesh dlq reingest` for an event the edge kept. Raises pydantic's ValidationError for an
    event the envelope cannot carry (an id or type longer than its fields take).
    """
    # Derived from Stripe's id: a redelivery or a reingested copy is a duplicate downstream, and the sweep
    # reconciles the same event under this same id.
    message_id = derived_id("stripe-event", event_id)
    envelope = StripeEventReceived(
        event_id=message_id,
        tenant_id=tenant_id,
        correlation_id=message_id,
        occurred_at=occurred_at,
        producer=PRODUCER,
        stripe_event_id=event_id,
        stripe_event_type=event_type,
        body=text,
    )
    # Keyed by the Stripe object, so the events of one session or charge reach the reconciler in order.
    return envelope, object_id


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def _read_capped(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Refused(413, "body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Refused(413, "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _verified(raw: bytes, header: str | None, secret: str) -> tuple[str, dict[str, object]]:
    if not header:
        raise _Refused(401, "missing_signature")
    if not header.isascii() or not header.isprintable():
        # Stripe's check compares with hmac.compare_digest, which raises on non-ASCII text instead of answering no.
        raise _Refused(401, "bad_signature")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused(400, "invalid_json") from exc
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=TOLERANCE_SECONDS)
    except stripe.SignatureVerificationError as exc:
        reason = "timestamp_outside_tolerance" if "tolerance" in str(exc) else "bad_signature"
        raise _Refused(401, reason) from exc
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise _Refused(400, "invalid_json") from exc
    if not isinstance(body, dict):
        raise _Refused(400, "invalid_json")
    return text, body


def stripe_webhook_router(
    *,
    secret: str,
    max_body_bytes: int,
    engine: Engine,
    redis: Redis,
    sink: StripeEventSink,
    seen_ttl_seconds: int,
    clock: Callable[[], datetime] = now,
) -> APIRouter:
    router = APIRouter(tags=["webhooks"])
    limit = min(max_body_bytes, BODY_LIMIT)

    def record(event_id: str, event_type: str, object_id: str, tenant_id: uuid.UUID | None, outcome: str) -> None:
        row = StripeEventRow(
            stripe_event_id=event_id,
            tenant_id=tenant_id,
            event_type=event_type[:128],
            object_id=object_id[:256],
            outcome=outcome,
            received_at=clock(),
        )
        try:
            with session_scope(engine) as session:
                PaymentStore(session).record_event(row)
        except IntegrityError:
            pass  # a concurrent delivery of the same event recorded it first

    def seen(event_id: str) -> bool:
        with session_scope(engine) as session:
            return PaymentStore(session).event_seen(event_id)

    async def accept(raw: bytes, header: str, text: str, body: dict[str, object]) -> str:
        try:
            event_id, event_type, object_id = event_identity(body)
            signal = read_event(body)
        except MalformedEvent as exc:
            raise _Refused(400, "invalid_event") from exc
        if await redis.exists(f"{SEEN_PREFIX}{event_id}") or await in_thread(seen, event_id):
            return "duplicate"
        if signal is None:
            await in_thread(record, event_id, event_type, object_id, None, "ignored")
            return "ignored"
        tenant_id = await in_thread(tenant_of, engine, signal)
        if tenant_id is None:
            headers = {
                "x-error-kind": "unresolved_tenant",
                "x-error-message": f"no tenant in the metadata of {object_id} and no attempt of ours owns it",
                "x-original-topic": PAYMENTS_STRIPE,
                "x-stripe-event-id": event_id,
                "x-signature": header,
            }
            await sink.keep(raw, key=object_id, headers=headers)
            await in_thread(record, event_id, event_type, object_id, None, "kept")
            return "kept"
        try:
            received, key = stripe_event_received(
                tenant_id,
                text,
                event_id=event_id,
                event_type=event_type,
                object_id=object_id,
                occurred_at=clock(),
            )
        except ValidationError as exc:
            raise _Refused(400, "invalid_event") from exc
        await sink.publish(received, key=key)
        await in_thread(record, event_id, event_type, object_id, tenant_id, "accepted")
        await redis.set(f"{SEEN_PREFIX}{event_id}", "1", ex=seen_ttl_seconds)
        return "accepted"

    @router.post("/webhooks/stripe")
    async def receive(request: Request) -> Response:
        try:
            raw = await _read_capped(request, limit)
            header = request.headers.get("stripe-signature")
            text, body = _verified(raw, header, secret)
            status = await accept(raw, header or "", text, body)
        except _Refused as refused:
            webhook_rejected("stripe", refused.reason)
            return JSONResponse({"error": refused.reason}, status_code=refused.status)
        webhook_verified("stripe", status)
        if status == "kept":
            log.warning("stripe event without a tenant kept in the DLQ")
        return JSONResponse({"status": status})

    return router
