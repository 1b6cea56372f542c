"""The Stripe sandbox behind a real socket, driven by the real stripe SDK, and the payments handler on top of it."""

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import stripe
from sqlalchemy import Engine
from sqlmodel import Session, SQLModel, select

from schemas.envelope import Actor, ActorKind, Money
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import OrderChanged, OrderLine, OrderSnapshot, OrderState
from schemas.payments import CheckoutRefused, PaymentLinkCreated
from schemas.topics import HANDOFF_COMMANDS, PAYMENTS_EVENTS
from sellmesh.db import make_engine
from sellmesh.localbroker import free_port
from sellmesh.outbox import OutboxRow
from sellmesh.service import derived_id
from sellmesh.subscriber import Handled
from sellmesh.tables import metadata
from services.payments.handlers import on_order_event
from services.payments.reconciler import Reconciler
from services.payments.store import PaymentAttemptRow
from services.payments.stripe_gateway import CheckoutUnavailable, StripeCheckoutGateway, StripeGateway
from tests.builders import envelope
from tests.integration.conftest import KEY, Sandbox
from tests.integration.payment_shop import AnswerLost, order_version, place_order

pytestmark = pytest.mark.integration


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[stripe.StripeClient]:
    http = stripe.RequestsClient()
    yield stripe.StripeClient(KEY, base_addresses={"api": sandbox.api}, max_network_retries=0, http_client=http)
    http.close()  # type: ignore[no-untyped-call]


def params(order_id: str = "order-1", *, cents: int = 1250) -> stripe.params.checkout.SessionCreateParams:
    return {
        "mode": "payment",
        "line_items": [
            {"quantity": 2, "price_data": {"currency": "usd", "unit_amount": cents, "product_data": {"name": "Mug"}}}
        ],
        "client_reference_id": order_id,
        "metadata": {"order_id": order_id, "tenant_id": "t-1"},
        "payment_intent_data": {"metadata": {"order_id": order_id}},
        "expires_at": int(time.time()) + 3600,
    }


def test_the_sdk_creates_a_session_shaped_like_stripes(client: stripe.StripeClient, sandbox: Sandbox) -> None:
    session = client.v1.checkout.sessions.create(params=params("order-shape"))
    assert isinstance(session, stripe.checkout.Session)
    assert session.id.startswith("cs_test_")
    shown = session.to_dict()
    assert {name: shown[name] for name in ("object", "mode", "status", "payment_status", "payment_intent")} == {
        "object": "checkout.session",
        "mode": "payment",
        "status": "open",
        "payment_status": "unpaid",
        "payment_intent": None,
    }
    assert (session.amount_total, session.currency, session.client_reference_id) == (2500, "usd", "order-shape")
    assert shown["metadata"] == {"order_id": "order-shape", "tenant_id": "t-1"}
    assert session.url == f"{sandbox.api}/pay/{session.id}"
    assert session.expires_at > time.time() + 3500


def test_one_idempotency_key_with_the_same_params_returns_the_same_session(client: stripe.StripeClient) -> None:
    key = f"checkout:{uuid.uuid4()}:1"
    body = params("order-idem")
    first = client.v1.checkout.sessions.create(params=body, options={"idempotency_key": key})
    again = client.v1.checkout.sessions.create(params=body, options={"idempotency_key": key})
    other = client.v1.checkout.sessions.create(params=body, options={"idempotency_key": f"{key}-other"})
    assert again.id == first.id
    assert again.to_dict() == first.to_dict()
    assert other.id != first.id


def test_one_idempotency_key_with_other_params_is_an_idempotency_error(client: stripe.StripeClient) -> None:
    key = f"checkout:{uuid.uuid4()}:1"
    client.v1.checkout.sessions.create(params=params("order-a"), options={"idempotency_key": key})
    with pytest.raises(stripe.IdempotencyError) as raised:
        client.v1.checkout.sessions.create(params=params("order-a", cents=999), options={"idempotency_key": key})
    assert raised.value.http_status == 400


def test_a_request_that_fails_validation_does_not_spend_its_idempotency_key(client: stripe.StripeClient) -> None:
    key = f"checkout:{uuid.uuid4()}:1"
    bad = params()
    bad["expires_at"] = int(time.time()) + 60  # Stripe wants at least 30 minutes
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params=bad, options={"idempotency_key": key})
    assert raised.value.param == "expires_at"
    assert client.v1.checkout.sessions.create(params=params(), options={"idempotency_key": key}).status == "open"


def test_invalid_params_are_refused_with_the_param_named(client: stripe.StripeClient) -> None:
    unknown = {**params(), "colour": "red"}
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params=unknown)  # type: ignore[arg-type]
    assert raised.value.param == "colour"
    no_name = params()
    no_name["line_items"] = [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 5}}]
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.create(params=no_name)
    assert raised.value.param == "line_items[0]"


def test_retrieve_returns_the_stored_session_and_404s_an_unknown_one(client: stripe.StripeClient) -> None:
    created = client.v1.checkout.sessions.create(params=params("order-get"))
    fetched = client.v1.checkout.sessions.retrieve(created.id)
    assert fetched.to_dict() == created.to_dict()
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert (raised.value.http_status, raised.value.code) == (404, "resource_missing")


def test_expire_closes_an_open_session_once(client: stripe.StripeClient) -> None:
    created = client.v1.checkout.sessions.create(params=params("order-expire"))
    expired = client.v1.checkout.sessions.expire(created.id)
    assert (expired.status, expired.payment_status, expired.url) == ("expired", "unpaid", None)
    assert client.v1.checkout.sessions.retrieve(created.id).status == "expired"
    with pytest.raises(stripe.InvalidRequestError, match="open"):
        client.v1.checkout.sessions.expire(created.id)


def test_the_test_hook_marks_a_session_complete_and_paid(client: stripe.StripeClient, sandbox: Sandbox) -> None:
    created = client.v1.checkout.sessions.create(params=params("order-pay"))
    response = httpx.post(f"{sandbox.api}/_test/sessions/{created.id}/pay")
    assert response.status_code == 200
    paid = client.v1.checkout.sessions.retrieve(created.id)
    assert (paid.status, paid.payment_status, paid.url) == ("complete", "paid", None)
    assert isinstance(paid.payment_intent, str) and paid.payment_intent.startswith("pi_test_")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.expire(created.id)


def test_a_session_reads_as_expired_once_its_expiry_passes(client: stripe.StripeClient, sandbox: Sandbox) -> None:
    created = client.v1.checkout.sessions.create(
        params={**params("order-lapse"), "expires_at": int(time.time()) + 1900}
    )
    sandbox.clock.offset = 2000
    try:
        assert client.v1.checkout.sessions.retrieve(created.id).status == "expired"
        assert httpx.post(f"{sandbox.api}/_test/sessions/{created.id}/pay").status_code == 400
    finally:
        sandbox.clock.offset = 0


def test_a_wrong_or_missing_api_key_is_an_authentication_error(sandbox: Sandbox) -> None:
    wrong = stripe.StripeClient("pk_test_public", base_addresses={"api": sandbox.api}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        wrong.v1.checkout.sessions.create(params=params())
    response = httpx.get(f"{sandbox.api}/v1/checkout/sessions/cs_test_x")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"type", "message", "code", "param"}


def test_the_pay_page_says_what_would_be_paid(client: stripe.StripeClient, sandbox: Sandbox) -> None:
    body = params("order-page")
    body["line_items"] = [
        {"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 1999, "product_data": {"name": "<b>Mug</b>"}}}
    ]
    created = client.v1.checkout.sessions.create(params=body)
    assert created.url is not None
    page = httpx.get(created.url)
    assert page.status_code == 200
    assert "19.99 USD" in page.text
    assert "&lt;b&gt;Mug&lt;/b&gt;" in page.text
    assert httpx.get(f"{sandbox.api}/pay/cs_test_missing").status_code == 404


# The payments handler, end to end against the sandbox, with its tables in SQLite.

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
TABLES = (
    "outbox",
    "payments_attempts",
    "payments_audit",
    "payments_checkout_plans",
    "gateway_tenants",
    "orders_orders",
    "orders_lines",
    "orders_audit",
)


def checkout_requested(order_id: uuid.UUID) -> OrderChanged:
    line = OrderLine(sku="MUG-1", name="Mug", quantity=2, unit_price=Money(amount_minor=1250, currency="USD"))
    total = Money(amount_minor=2500, currency="USD")
    snapshot = OrderSnapshot(
        order_id=order_id, state=OrderState.AWAITING_PAYMENT, version=3, lines=(line,), total=total
    )
    return OrderChanged(
        **envelope(TENANT, producer="orders"),
        order_id=order_id,
        change="checkout_requested",
        actor=Actor(kind=ActorKind.AI),
        order=snapshot,
    )


def payments_engine(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine, tables=[metadata.tables[name] for name in TABLES])
    return engine


async def checkout(
    event: OrderChanged, gateway: StripeCheckoutGateway, engine: Engine, **kwargs: Any
) -> Handled | None:
    """Handle the request as payments does once orders accepted it: the order awaits payment at its version."""
    if order_version(engine, event.order_id) is None:
        place_order(engine, TENANT, event.order_id, state=OrderState.AWAITING_PAYMENT, version=event.order.version)
    reconciler = Reconciler(stripe=gateway, engine=engine)
    return await on_order_event(event, gateway=gateway, engine=engine, reconciler=reconciler, **kwargs)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = payments_engine(tmp_path / "payments.db")
    yield engine
    engine.dispose()


@pytest.mark.asyncio
async def test_a_checkout_request_records_one_attempt_and_queues_one_link_event(
    sandbox: Sandbox, engine: Engine
) -> None:
    event = checkout_requested(uuid.uuid4())
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        assert await checkout(event, gateway, engine) is None
        # A redelivery adds nothing, and the subscriber counts it as a duplicate.
        assert await checkout(event, gateway, engine) is Handled.DUPLICATE
    with Session(engine) as session:
        attempts = list(session.exec(select(PaymentAttemptRow)))
        outbox = list(session.exec(select(OutboxRow)))
    assert len(attempts) == 1 and len(outbox) == 1
    attempt, row = attempts[0], outbox[0]
    assert (attempt.tenant_id, attempt.order_id, attempt.attempt, attempt.status) == (TENANT, event.order_id, 3, "open")
    assert (attempt.amount_minor, attempt.currency) == (2500, "USD")
    assert (row.topic, row.key, row.producer) == (PAYMENTS_EVENTS, str(event.order_id), "payments")
    assert json.loads(row.headers)["tenant_id"] == str(TENANT)
    link = PaymentLinkCreated.model_validate_json(row.payload)
    assert link.event_id == derived_id(event.event_id, "link")
    assert (link.causation_id, link.correlation_id) == (event.event_id, event.correlation_id)
    assert (link.checkout_session_id, link.url) == (attempt.checkout_session_id, attempt.url)
    assert link.amount == Money(amount_minor=2500, currency="USD")
    assert link.expires_at == event.occurred_at.replace(microsecond=0) + timedelta(hours=1)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
        stored = (await http.get(f"{sandbox.api}/v1/checkout/sessions/{link.checkout_session_id}")).json()
    assert stored["client_reference_id"] == str(event.order_id)
    assert stored["metadata"] == {"tenant_id": str(TENANT), "order_id": str(event.order_id)}


@pytest.mark.asyncio
async def test_a_replay_after_a_lost_commit_gets_the_same_session_back(
    sandbox: Sandbox, engine: Engine, tmp_path: Path
) -> None:
    event = checkout_requested(uuid.uuid4())
    lost = payments_engine(tmp_path / "lost.db")  # stands for a commit that never happened
    later = event.occurred_at + timedelta(minutes=10)
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        await checkout(event, gateway, lost)
        await checkout(event, gateway, engine, clock=lambda: later)
    with Session(lost) as first, Session(engine) as second:
        sessions = [db.exec(select(PaymentAttemptRow)).one().checkout_session_id for db in (first, second)]
    lost.dispose()
    assert sessions[0] == sessions[1]


def recorded_session(engine: Engine) -> PaymentAttemptRow:
    with Session(engine) as session:
        return session.exec(select(PaymentAttemptRow)).one()


@pytest.mark.asyncio
async def test_a_retry_after_a_lost_answer_asks_for_the_same_session_even_when_it_comes_late(
    sandbox: Sandbox, engine: Engine
) -> None:
    """The first try ran while the request was fresh, its retry once it was stale: the expiry each would pick
    differs, and Stripe refuses a key replayed with other parameters. The retry asks with the first try's."""
    event = checkout_requested(uuid.uuid4())
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        lost = AnswerLost(gateway)
        with pytest.raises(CheckoutUnavailable):
            await checkout(
                event, cast(StripeGateway, lost), engine, clock=lambda: event.occurred_at + timedelta(minutes=15)
            )
        assert await checkout(event, gateway, engine, clock=lambda: event.occurred_at + timedelta(minutes=22)) is None
    [made] = lost.made
    attempt = recorded_session(engine)
    assert attempt.checkout_session_id == made.id
    assert (
        attempt.expires_at.replace(tzinfo=UTC)
        == made.expires_at
        == event.occurred_at.replace(microsecond=0) + timedelta(hours=1)
    )


@pytest.mark.asyncio
async def test_a_retry_hours_later_asks_for_a_new_expiry_under_a_new_key(sandbox: Sandbox, engine: Engine) -> None:
    """The kept expiry has passed: Stripe would refuse it. The never-announced first session lapses unused."""
    event = checkout_requested(uuid.uuid4())
    later = event.occurred_at + timedelta(hours=3)
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        lost = AnswerLost(gateway)
        with pytest.raises(CheckoutUnavailable):
            await checkout(event, cast(StripeGateway, lost), engine, clock=lambda: event.occurred_at)
        assert await checkout(event, gateway, engine, clock=lambda: later) is None
        assert await checkout(event, gateway, engine, clock=lambda: later) is Handled.DUPLICATE
    [made] = lost.made
    attempt = recorded_session(engine)
    assert attempt.checkout_session_id != made.id
    assert timedelta(minutes=30) < attempt.expires_at.replace(tzinfo=UTC) - later <= timedelta(hours=1)
    with Session(engine) as session:
        [link] = [PaymentLinkCreated.model_validate_json(row.payload) for row in session.exec(select(OutboxRow))]
    assert link.checkout_session_id == attempt.checkout_session_id


@pytest.mark.asyncio
async def test_stripe_refusing_the_request_sends_the_order_back_and_asks_a_person(
    sandbox: Sandbox, engine: Engine
) -> None:
    """The order is told its checkout cannot be made, so it stops holding its stock, and a person is asked; nothing
    is dead-lettered, since a redrive would meet the same refusal."""
    event = checkout_requested(uuid.uuid4())
    # Stripe's clock runs hours ahead: the link's expiry is in its past, a request it finds invalid.
    sandbox.clock.offset = 3 * 3600
    try:
        async with httpx.AsyncClient() as http:
            gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
            await checkout(event, gateway, engine)
    finally:
        sandbox.clock.offset = 0
    with Session(engine) as session:
        assert list(session.exec(select(PaymentAttemptRow))) == []
        queued = {row.topic: row for row in session.exec(select(OutboxRow))}
    assert set(queued) == {PAYMENTS_EVENTS, HANDOFF_COMMANDS}
    refused = CheckoutRefused.model_validate_json(queued[PAYMENTS_EVENTS].payload)
    assert (refused.order_id, refused.order_version, refused.event_id) == (
        event.order_id,
        3,
        derived_id(event.event_id, "refused"),
    )
    assert "expires_at" in refused.reason
    assert queued[PAYMENTS_EVENTS].key == str(event.order_id)
    handoff = RequestHandoff.model_validate_json(queued[HANDOFF_COMMANDS].payload)
    assert (handoff.reason, handoff.conversation_id) == (HandoffReason.REJECTED_COMMAND, f"conv-{event.order_id}")


@pytest.mark.asyncio
async def test_a_refused_api_key_is_waited_out_and_the_redrive_after_the_fix_makes_the_link(
    sandbox: Sandbox, engine: Engine
) -> None:
    """A rotated or restricted key is not the order's fault: the order keeps awaiting its checkout, nobody is
    asked, and once on-call puts the right key in, the same request (redriven from the DLQ) gets its link."""
    event = checkout_requested(uuid.uuid4())
    async with httpx.AsyncClient() as http:
        revoked = StripeCheckoutGateway(api_key="rk_test_restricted", base_url=sandbox.api, http=http)
        with pytest.raises(CheckoutUnavailable, match="refused the API key") as raised:
            await checkout(event, revoked, engine)
        assert "rk_test_restricted" not in str(raised.value)
        with Session(engine) as session:
            assert list(session.exec(select(OutboxRow))) == []  # no checkout_refused, no handoff
        assert order_version(engine, event.order_id) == 3
        fixed = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        assert await checkout(event, fixed, engine) is None
    with Session(engine) as session:
        [queued] = list(session.exec(select(OutboxRow)))
    assert PaymentLinkCreated.model_validate_json(queued.payload).checkout_session_id == (
        recorded_session(engine).checkout_session_id
    )


@pytest.mark.asyncio
async def test_stripe_out_of_reach_is_left_to_the_wrappers_retries(engine: Engine) -> None:
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=f"http://127.0.0.1:{free_port()}", http=http)
        with pytest.raises(CheckoutUnavailable):
            await checkout(checkout_requested(uuid.uuid4()), gateway, engine)
    with Session(engine) as session:
        assert list(session.exec(select(PaymentAttemptRow))) == []
