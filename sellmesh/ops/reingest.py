"""`sellmesh dlq reingest`: a raw webhook an edge kept, wrapped as that edge would have wrapped it.

Ingest's Meta edge keeps a verified body addressed to no connected account (`unknown_channel_account` in
channel.raw.v1.dlq); payments' Stripe edge keeps a verified event no tenant could be found for
(`unresolved_tenant` in payments.stripe.v1.dlq). Both keep the provider's bytes, not the envelope their topic
carries, so `redrive` refuses them. Once the account is connected or the payment attempt recorded, the routing
the edge did is done again with the edges' own code (the account lookup and its signature check; the event's
identity, its signal and the attempt lookup), and the envelope goes out as the edge builds it (`raw_webhook`,
`stripe_event_received`), so the two cannot drift apart.

This module names services on purpose: it is where the ops tools are composed with the edges' routing.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import stripe
from pydantic import ValidationError
from sqlalchemy import Engine, make_url

from schemas.envelope import Envelope
from schemas.topics import CHANNEL_RAW, PAYMENTS_STRIPE, dlq_of
from sellmesh.broker import envelope_headers
from sellmesh.db import make_engine
from sellmesh.ops.dlq import RAW_WEBHOOK_KINDS
from sellmesh.ops.errors import DatabaseUnavailable
from sellmesh.ops.message import Headers, Message
from sellmesh.ops.replay import Refusal, ReplayItem
from sellmesh.service import derived_id
from sellmesh.settings import MeshSettings
from services.gateway.query import find_channel_account
from services.ingest.routing import TooManyAccounts, UnroutableWebhook, account_ids, channel_of
from services.ingest.signature import signature_ok
from services.ingest.webhook import raw_webhook
from services.payments.stripe_event import MalformedEvent, event_identity, read_event
from services.payments.webhook import stripe_event_received, tenant_of

# Both edges keep the request's signature header (X-Hub-Signature-256, Stripe-Signature) beside the bytes.
SIGNATURE_HEADER = "x-signature"

# (the services' database, the dead letter, now) -> what to publish, or why not
Rewrap = Callable[[Engine, Message, datetime], ReplayItem | Refusal]


@dataclass(frozen=True)
class KeptWebhooks:
    """Where one edge keeps the webhooks it could not route, under which `x-error-kind`, and their way back."""

    dlq: str
    kind: str
    topic: str
    rewrap: Rewrap


def rewrap_meta(engine: Engine, message: Message, at: datetime) -> ReplayItem | Refusal:
    """What ingest's edge does with a verified body once one of its accounts is known (services/ingest/webhook.py)."""
    raw = message.value
    try:
        body = json.loads(raw)
        text = raw.decode("utf-8")
    except (ValueError, RecursionError):
        return Refusal(message, "not a JSON body")
    if not isinstance(body, dict):
        return Refusal(message, "not a JSON object")
    try:
        channel = channel_of(body)
        external_ids = account_ids(body)
    except (UnroutableWebhook, TooManyAccounts) as exc:
        return Refusal(message, f"not a Meta webhook ingest routes: {exc}")
    accounts = [find_channel_account(engine, channel=channel.value, external_id=e) for e in external_ids]
    known = [account for account in accounts if account is not None]
    if not known:
        return Refusal(message, f"still no {channel.value} account connected for {', '.join(external_ids)[:200]}")
    # The edge could check the body only against the platform app's secret; each account it now names must
    # have signed it too, exactly as for a webhook arriving today.
    if not all(signature_ok(raw, message.header_map.get(SIGNATURE_HEADER), a.app_secret) for a in known):
        return Refusal(message, "its signature does not verify with the app secret of the account now connected")
    try:
        envelope, key = raw_webhook(
            known[0],
            text,
            # Derived from where the dead letter sits: reingesting it twice publishes one message, which dedup drops.
            event_id=derived_id("reingest", message.topic, message.partition, message.offset),
            occurred_at=at,
            received_at=message.timestamp,  # when the edge kept it, which is when it arrived
            # Checked above with the accounts' own secrets only: their items, and no others, may be taken.
            platform_signed=False,
            signed_by=known,
        )
    except ValidationError as exc:
        return Refusal(message, f"does not fit a {CHANNEL_RAW} message ({exc.error_count()} problem(s))")
    return _item(message, CHANNEL_RAW, envelope, key=key)


def rewrap_stripe(engine: Engine, message: Message, at: datetime, *, secret: str | None = None) -> ReplayItem | Refusal:
    """What payments' edge does with a verified event once a tenant is found for it (services/payments/webhook.py).

    The kept Stripe-Signature is checked again, with Stripe's own check and the secret the edge verifies with
    (`secret`, by default STRIPE_WEBHOOK_SECRET as the edge reads it): whatever wrote to the DLQ, only what
    Stripe signed goes back as a verified event. Its timestamp tolerance is off, since a kept letter is old by
    design."""
    try:
        text = message.value.decode("utf-8")
    except ValueError:
        return Refusal(message, "not a JSON body")
    secret = secret if secret is not None else MeshSettings().stripe_webhook_signing_secret
    if secret is None:
        return Refusal(message, "no Stripe webhook secret to check its signature with: set STRIPE_WEBHOOK_SECRET")
    if not _stripe_signed(text, message.header_map.get(SIGNATURE_HEADER), secret):
        return Refusal(message, "its Stripe-Signature does not verify with the webhook secret (STRIPE_WEBHOOK_SECRET)")
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        return Refusal(message, "not a JSON body")
    if not isinstance(body, dict):
        return Refusal(message, "not a JSON object")
    try:
        event_id, event_type, object_id = event_identity(body)
        signal = read_event(body)
    except MalformedEvent as exc:
        return Refusal(message, f"not a Stripe event payments reads: {exc}")
    if signal is None:
        return Refusal(message, f"{event_type} is not an event payments reconciles")
    tenant_id = tenant_of(engine, signal)
    if tenant_id is None:
        return Refusal(message, f"still no tenant for {object_id}: none in its metadata and no payment attempt owns it")
    try:
        envelope, key = stripe_event_received(
            tenant_id, text, event_id=event_id, event_type=event_type, object_id=object_id, occurred_at=at
        )
    except ValidationError as exc:
        return Refusal(message, f"does not fit a {PAYMENTS_STRIPE} message ({exc.error_count()} problem(s))")
    return _item(message, PAYMENTS_STRIPE, envelope, key=key)


def _stripe_signed(text: str, header: str | None, secret: str) -> bool:
    # Stripe's check compares with hmac.compare_digest, which raises on non-ASCII text instead of answering no.
    if not header or not header.isascii() or not header.isprintable():
        return False
    try:
        stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
    except stripe.SignatureVerificationError:
        return False
    return True


def _item(message: Message, topic: str, envelope: Envelope, *, key: str) -> ReplayItem:
    headers: Headers = tuple((name, value.encode()) for name, value in envelope_headers(envelope).items())
    return ReplayItem(message, topic, envelope.model_dump_json().encode(), key.encode(), headers)


REWRAPS: dict[str, tuple[str, Rewrap]] = {
    dlq_of(CHANNEL_RAW): (CHANNEL_RAW, rewrap_meta),
    dlq_of(PAYMENTS_STRIPE): (PAYMENTS_STRIPE, rewrap_stripe),
}
KEPT = {dlq: KeptWebhooks(dlq, RAW_WEBHOOK_KINDS[dlq], topic, rewrap) for dlq, (topic, rewrap) in REWRAPS.items()}


def open_database(url: str) -> Engine:
    """The services' database; a SQLite file that is not there is an error, not a new empty database."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and not Path(parsed.database).exists():
        raise DatabaseUnavailable(f"no database at {parsed.database}: set DATABASE_URL to the services' database")
    return make_engine(url)
