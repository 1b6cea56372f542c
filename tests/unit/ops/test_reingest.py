"""A raw webhook an edge kept goes back as the envelope that edge would publish, once it can be routed; not before."""

import dataclasses
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from schemas.channel import RawWebhook
from schemas.envelope import Channel
from schemas.payments import StripeEventReceived
from schemas.registry import adapter_for
from schemas.topics import CHANNEL_RAW, PAYMENTS_STRIPE, dlq_of
from sellmesh.db import session_scope
from sellmesh.ops.message import Message, message_of
from sellmesh.ops.reingest import rewrap_meta, rewrap_stripe
from sellmesh.ops.replay import Refusal, ReplayItem
from sellmesh.service import derived_id
from sellmesh.settings import SANDBOX_STRIPE_WEBHOOK_SECRET
from services.gateway.admin import connect_channel_account, create_tenant
from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import sign
from services.payments.tables import PaymentAttemptRow

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
KEPT_AT_MS = 1_790_000_000_000
SECRET = "app-secret-1"


def kept_meta(phone_number_id: str, *, secret: str = SECRET, offset: int = 3) -> Message:
    """A body ingest's edge kept for an account nobody had connected, with the headers it writes."""
    raw = encode(whatsapp_text(phone_number_id=phone_number_id, customer="15550001", text="still there?"))
    return message_of(
        topic=dlq_of(CHANNEL_RAW),
        partition=0,
        offset=offset,
        timestamp_ms=KEPT_AT_MS,
        key=phone_number_id.encode(),
        value=raw,
        headers=[
            ("x-error-kind", b"unknown_channel_account"),
            ("x-error-message", f"no channel account for {phone_number_id}".encode()),
            ("x-original-topic", CHANNEL_RAW.encode()),
            ("x-signature", sign(raw, secret).encode()),
        ],
    )


@pytest.fixture(autouse=True)
def sandbox_stripe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The edge's secret as configured by default: the sandbox's, while the API key is the sandbox's."""
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)


def stripe_signature(raw: bytes, secret: str = SANDBOX_STRIPE_WEBHOOK_SECRET) -> str:
    """Stripe-Signature as Stripe writes it, dated when the edge kept the event: long past any tolerance."""
    signed_at = KEPT_AT_MS // 1000
    digest = hmac.new(secret.encode(), f"{signed_at}.".encode() + raw, hashlib.sha256).hexdigest()
    return f"t={signed_at},v1={digest}"


def kept_stripe_bytes(value: bytes, *, signature: str | None = None) -> Message:
    return message_of(
        topic=dlq_of(PAYMENTS_STRIPE),
        partition=0,
        offset=0,
        timestamp_ms=KEPT_AT_MS,
        key=None,
        value=value,
        headers=[
            ("x-error-kind", b"unresolved_tenant"),
            ("x-original-topic", PAYMENTS_STRIPE.encode()),
            ("x-signature", (stripe_signature(value) if signature is None else signature).encode()),
        ],
    )


def kept_stripe(obj: dict[str, Any], *, secret: str = SANDBOX_STRIPE_WEBHOOK_SECRET) -> Message:
    """An event payments' edge kept because no tenant could be found for it, signed by Stripe with `secret`."""
    event_id = f"evt_{uuid.uuid4().hex}"
    body = {"id": event_id, "object": "event", "type": "charge.refunded", "created": 1, "data": {"object": obj}}
    raw = json.dumps(body).encode()
    return message_of(
        topic=dlq_of(PAYMENTS_STRIPE),
        partition=0,
        offset=0,
        timestamp_ms=KEPT_AT_MS,
        key=obj["id"].encode(),
        value=raw,
        headers=[
            ("x-error-kind", b"unresolved_tenant"),
            ("x-original-topic", PAYMENTS_STRIPE.encode()),
            ("x-stripe-event-id", event_id.encode()),
            ("x-signature", stripe_signature(raw, secret).encode()),
        ],
    )


def connect(engine: Engine, phone_number_id: str, *, secret: str = SECRET) -> tuple[uuid.UUID, uuid.UUID]:
    tenant_id, _ = create_tenant(engine, name="Kept shop")
    account_id = connect_channel_account(
        engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=phone_number_id,
        app_secret=secret,
        verify_token="verify",
        access_token="token",
    )
    return tenant_id, account_id


def test_a_meta_body_for_an_account_still_unknown_is_refused(engine: Engine) -> None:
    refused = rewrap_meta(engine, kept_meta("1001"), AT)
    assert isinstance(refused, Refusal) and refused.reason == "still no whatsapp account connected for 1001"


def test_a_meta_body_goes_back_as_the_raw_webhook_the_edge_publishes_once_its_account_is_connected(
    engine: Engine,
) -> None:
    tenant_id, account_id = connect(engine, "1002")
    letter = kept_meta("1002")
    item = rewrap_meta(engine, letter, AT)
    assert isinstance(item, ReplayItem)
    assert (item.target, item.key, item.message) == (CHANNEL_RAW, str(account_id).encode(), letter)
    envelope = adapter_for(CHANNEL_RAW).validate_json(item.value)
    assert isinstance(envelope, RawWebhook)
    assert (envelope.tenant_id, envelope.channel_account_id, envelope.producer) == (
        tenant_id,
        str(account_id),
        "ingest",
    )
    assert envelope.body == letter.value.decode() and envelope.received_at == letter.timestamp
    assert dict(item.headers)["tenant_id"] == str(tenant_id).encode()
    assert not [name for name, _ in item.headers if name.startswith("x-")]  # no signature, no error headers
    again = rewrap_meta(engine, letter, AT + timedelta(hours=1))
    assert isinstance(again, ReplayItem)
    assert adapter_for(CHANNEL_RAW).validate_json(again.value).event_id == envelope.event_id


def test_a_meta_body_the_connected_account_did_not_sign_is_refused(engine: Engine) -> None:
    """The edge checked it against the platform's secret only; the account's app must have signed it too."""
    connect(engine, "1003", secret="another-app")
    refused = rewrap_meta(engine, kept_meta("1003"), AT)
    assert isinstance(refused, Refusal) and "does not verify" in refused.reason


def test_bytes_that_are_no_meta_webhook_are_refused(engine: Engine) -> None:
    for value, reason in ((b"\xff\x00", "not a JSON body"), (b'{"object": "page"}', "not a Meta webhook")):
        letter = message_of(topic="t", partition=0, offset=0, timestamp_ms=0, key=None, value=value, headers=[])
        refused = rewrap_meta(engine, letter, AT)
        assert isinstance(refused, Refusal) and refused.reason.startswith(reason)


def test_a_stripe_event_without_a_tenant_is_refused_until_an_attempt_owns_it(engine: Engine) -> None:
    intent = f"pi_{uuid.uuid4().hex}"
    letter = kept_stripe({"id": "ch_kept", "object": "charge", "payment_intent": intent})
    refused = rewrap_stripe(engine, letter, AT)
    assert isinstance(refused, Refusal) and refused.reason.startswith("still no tenant for ch_kept")
    tenant_id = uuid.uuid4()
    with session_scope(engine) as session:
        session.add(
            PaymentAttemptRow(
                tenant_id=tenant_id,
                order_id=uuid.uuid4(),
                attempt=1,
                checkout_session_id=f"cs_{uuid.uuid4().hex}",
                url="https://checkout.example/x",
                amount_minor=1250,
                currency="EUR",
                status="paid",
                expires_at=AT,
                created_at=AT,
                payment_intent_id=intent,
            )
        )
    item = rewrap_stripe(engine, letter, AT)
    assert isinstance(item, ReplayItem) and (item.target, item.key) == (PAYMENTS_STRIPE, b"ch_kept")
    envelope = adapter_for(PAYMENTS_STRIPE).validate_json(item.value)
    assert isinstance(envelope, StripeEventReceived)
    stripe_event_id = json.loads(letter.value)["id"]
    # The id the edge gives the event: whoever took it already drops this copy.
    assert envelope.event_id == derived_id("stripe-event", stripe_event_id)
    assert (envelope.tenant_id, envelope.stripe_event_id, envelope.body) == (
        tenant_id,
        stripe_event_id,
        letter.value.decode(),
    )


def test_a_stripe_event_with_its_tenant_in_the_metadata_needs_no_lookup(engine: Engine) -> None:
    tenant_id = uuid.uuid4()
    letter = kept_stripe({"id": "ch_meta", "object": "charge", "metadata": {"tenant_id": str(tenant_id)}})
    item = rewrap_stripe(engine, letter, AT)
    assert isinstance(item, ReplayItem)
    assert adapter_for(PAYMENTS_STRIPE).validate_json(item.value).tenant_id == tenant_id


def test_bytes_that_are_no_stripe_event_payments_reconciles_are_refused(engine: Engine) -> None:
    other = {
        "id": "evt_1",
        "object": "event",
        "type": "customer.created",
        "created": 1,
        "data": {"object": {"id": "c"}},
    }
    for value, reason in (
        (b"[1]", "not a JSON object"),
        (b'{"object": "charge"}', "not a Stripe event"),
        (json.dumps(other).encode(), "customer.created is not an event payments reconciles"),
    ):
        refused = rewrap_stripe(engine, kept_stripe_bytes(value), AT)
        assert isinstance(refused, Refusal) and refused.reason.startswith(reason)


def test_a_kept_stripe_event_whose_signature_does_not_verify_is_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked as the edge checks, with the edge's secret: only what Stripe signed goes back as a verified event."""
    tenant = {"tenant_id": str(uuid.uuid4())}
    signed = kept_stripe({"id": "ch_signed", "object": "charge", "metadata": tenant})
    assert isinstance(rewrap_stripe(engine, signed, AT), ReplayItem)  # signed long ago: no tolerance applies
    tampered = dataclasses.replace(signed, value=signed.value.replace(b"ch_signed", b"ch_forged"))
    unsigned = kept_stripe_bytes(signed.value, signature="")
    not_ascii = kept_stripe_bytes(signed.value, signature="t=1,v1=\u00e9")
    other_secret = kept_stripe({"id": "ch_other", "object": "charge", "metadata": tenant}, secret="whsec_other")
    for letter in (tampered, unsigned, not_ascii, other_secret):
        refused = rewrap_stripe(engine, letter, AT)
        assert isinstance(refused, Refusal) and "Stripe-Signature does not verify" in refused.reason
    # The secret the edge is configured with (STRIPE_WEBHOOK_SECRET) is the one checked.
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_other")
    assert isinstance(rewrap_stripe(engine, other_secret, AT), ReplayItem)
    assert isinstance(rewrap_stripe(engine, signed, AT), Refusal)
    assert isinstance(rewrap_stripe(engine, signed, AT, secret=SANDBOX_STRIPE_WEBHOOK_SECRET), ReplayItem)


def test_without_a_webhook_secret_a_kept_stripe_event_is_refused(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_live_real")
    letter = kept_stripe({"id": "ch_x", "object": "charge", "metadata": {"tenant_id": str(uuid.uuid4())}})
    refused = rewrap_stripe(engine, letter, AT)
    assert isinstance(refused, Refusal) and "set STRIPE_WEBHOOK_SECRET" in refused.reason
