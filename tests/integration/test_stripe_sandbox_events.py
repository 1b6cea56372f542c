"""The sandbox's events, charges and Connect accounts through the real SDK, and its webhooks signed as Stripe signs."""

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from fastapi import APIRouter, Request
from redis.asyncio import Redis

from tests.integration.conftest import KEY, WEBHOOK_SECRET, Sandbox, serve_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture
def client(sandbox: Sandbox) -> Iterator[stripe.StripeClient]:
    http = stripe.RequestsClient()
    yield stripe.StripeClient(KEY, base_addresses={"api": sandbox.api}, max_network_retries=0, http_client=http)
    http.close()  # type: ignore[no-untyped-call]


def new_session(client: stripe.StripeClient, *, account: str | None = None) -> stripe.checkout.Session:
    params: stripe.params.checkout.SessionCreateParams = {
        "mode": "payment",
        "line_items": [
            {"quantity": 1, "price_data": {"currency": "eur", "unit_amount": 900, "product_data": {"name": "Mug"}}}
        ],
        "metadata": {"order_id": "o-1", "tenant_id": "t-1"},
        "expires_at": int(time.time()) + 3600,
    }
    return client.v1.checkout.sessions.create(params=params, options={"stripe_account": account} if account else {})


def test_every_change_of_a_session_is_an_event_listed_newest_first(
    client: stripe.StripeClient, sandbox: Sandbox
) -> None:
    paid, lapsed = new_session(client), new_session(client)
    sandbox.hook(paid.id)
    sandbox.hook(paid.id, "refund")
    client.v1.checkout.sessions.expire(lapsed.id)
    events = client.v1.events.list(params={"limit": 100, "created": {"gte": int(time.time()) - 60}}).data
    assert [e.type for e in events][:3] == ["checkout.session.expired", "charge.refunded", "checkout.session.completed"]
    completed = next(e for e in events if e.type == "checkout.session.completed")
    assert (completed.data.object["id"], completed.data.object["payment_status"]) == (paid.id, "paid")
    only = client.v1.events.list(params={"types": ["checkout.session.expired"], "limit": 100}).data
    assert {e.type for e in only} == {"checkout.session.expired"}
    assert client.v1.events.retrieve(completed.id).id == completed.id


def test_events_page_with_starting_after_and_filter_by_created(client: stripe.StripeClient, sandbox: Sandbox) -> None:
    for _ in range(3):
        sandbox.hook(new_session(client).id)
    first = client.v1.events.list(params={"limit": 2})
    assert len(first.data) == 2 and first.has_more
    rest = client.v1.events.list(params={"limit": 100, "starting_after": first.data[-1].id})
    assert not {e.id for e in rest.data} & {e.id for e in first.data}
    future = client.v1.events.list(params={"created": {"gt": int(time.time()) + 60}})
    assert future.data == []


def test_a_paid_session_has_a_charge_found_by_its_payment_intent(client: stripe.StripeClient, sandbox: Sandbox) -> None:
    session = new_session(client)
    sandbox.hook(session.id)
    paid = client.v1.checkout.sessions.retrieve(session.id)
    assert isinstance(paid.payment_intent, str)
    [found] = client.v1.checkout.sessions.list(params={"payment_intent": paid.payment_intent}).data
    assert found.id == session.id
    assert sandbox.hook(session.id, "dispute").status_code == 200
    disputes = client.v1.events.list(params={"types": ["charge.dispute.created"]}).data
    charge_id = disputes[0].data.object["charge"]
    charge = client.v1.charges.retrieve(charge_id)
    assert (charge.amount, charge.disputed, charge.refunded, charge.payment_intent) == (
        900,
        True,
        False,
        paid.payment_intent,
    )
    assert sandbox.hook(session.id, "refund").status_code == 400  # Stripe refuses to refund a disputed charge


def test_a_delayed_payment_completes_unpaid_and_settles_later(client: stripe.StripeClient, sandbox: Sandbox) -> None:
    session = new_session(client)
    sandbox.hook(session.id, "pay_delayed")
    pending = client.v1.checkout.sessions.retrieve(session.id)
    assert (pending.status, pending.payment_status) == ("complete", "unpaid")
    sandbox.hook(session.id, "delayed_succeeded")
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "paid"
    assert sandbox.hook(session.id, "delayed_failed").status_code == 400


def test_a_connect_accounts_session_and_events_are_invisible_without_its_header(
    client: stripe.StripeClient, sandbox: Sandbox
) -> None:
    session = new_session(client, account="acct_test123")
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.checkout.sessions.retrieve(session.id)
    options: Any = {"stripe_account": "acct_test123"}
    assert client.v1.checkout.sessions.retrieve(session.id, options=options).id == session.id
    sandbox.hook(session.id)
    theirs = client.v1.events.list(params={"limit": 100}, options=options).data
    assert [(e.type, e.account) for e in theirs] == [("checkout.session.completed", "acct_test123")]
    assert session.id not in {e.data.object["id"] for e in client.v1.events.list(params={"limit": 100}).data}


def test_webhooks_are_signed_so_the_sdk_verifies_them(redis_url: str) -> None:
    received: list[stripe.Event] = []

    def capture(_: Redis) -> list[APIRouter]:
        router = APIRouter()

        @router.post("/webhooks/stripe")
        async def webhook(request: Request) -> dict[str, str]:
            body = await request.body()
            header = request.headers["stripe-signature"]
            received.append(stripe.Webhook.construct_event(body, header, WEBHOOK_SECRET))
            return {"status": "ok"}

        return [router]

    with serve_sandbox(redis_url, webhooks=True, routes=capture) as sandbox:
        client = stripe.StripeClient(KEY, base_addresses={"api": sandbox.api}, max_network_retries=0)
        paid, dropped = new_session(client), new_session(client)
        assert sandbox.hook(paid.id).status_code == 200
        client.v1.checkout.sessions.expire(dropped.id)
        assert httpx.get(f"{sandbox.api}/pay/{paid.id}").status_code == 200
    assert [(e.type, e.data.object["id"]) for e in received] == [
        ("checkout.session.completed", paid.id),
        ("checkout.session.expired", dropped.id),
    ]
