"""How Stripe's refusals are read, through the real SDK over a mock transport: only a refused request is final."""

import json
import logging
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from schemas.envelope import Money
from services.payments.domain import CheckoutLine, CheckoutRequest
from services.payments.stripe_gateway import (
    AccountRefused,
    CheckoutRejected,
    CheckoutUnavailable,
    ServerErrorKept,
    StripeCheckoutGateway,
)

KEY = "sk_live_not_a_real_key_4242"


def request(account: str | None = None) -> CheckoutRequest:
    order_id = uuid.uuid4()
    made = CheckoutRequest(
        tenant_id=uuid.uuid4(),
        order_id=order_id,
        attempt=3,
        lines=(CheckoutLine(name="Mug", unit_amount_minor=1250, quantity=2),),
        total=Money(amount_minor=2500, currency="USD"),
        client_reference_id=str(order_id),
        metadata={"order_id": str(order_id)},
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        idempotency_key=f"checkout:{order_id}:3",
    )
    return made if account is None else replace(made, settings=replace(made.settings, stripe_account=account))


async def answered(status: int, error: dict[str, str], *, account: str | None = None) -> Exception:
    """What creating a session raises when Stripe answers `status` with `error`."""

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": error}, headers={"request-id": "req_test_1"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url="https://stripe.test", http=http)
        with pytest.raises((CheckoutRejected, CheckoutUnavailable)) as raised:
            await gateway.create_session(request(account))
    return raised.value


# Stripe's messages for a refused key name part of it; the one below names all of it, and none of it may leak.
REFUSED_KEY = {"type": "invalid_request_error", "message": f"Invalid API Key provided: {KEY}"}


@pytest.mark.parametrize(
    ("status", "error", "cause"),
    [
        (401, REFUSED_KEY, "refused the API key (401)"),
        (403, {"type": "invalid_request_error", "message": f"The key {KEY} is restricted"}, "(403)"),
        (
            400,
            {"type": "idempotency_error", "message": "Keys can only be used with the same parameters"},
            "idempotency_error",
        ),
    ],
    ids=["revoked-key", "restricted-key", "idempotency-error"],
)
async def test_a_refused_key_or_a_clashing_idempotency_key_is_waited_out_and_logged_without_the_key(
    status: int, error: dict[str, str], cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="services.payments.stripe_gateway"):
        raised = await answered(status, error)
    assert isinstance(raised, CheckoutUnavailable)
    assert cause in str(raised) and "req_test_1" in str(raised)
    [logged] = caplog.records
    assert logged.levelno == logging.ERROR and cause in json.dumps(logged.__dict__, default=str)
    assert KEY not in str(raised) and KEY not in json.dumps(logged.__dict__, default=str)
    assert "4242" not in str(raised)


async def test_a_request_stripe_finds_invalid_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    error = {"type": "invalid_request_error", "message": "expires_at must be at least 30 minutes ahead"}
    with caplog.at_level(logging.ERROR):
        raised = await answered(400, error)
    assert isinstance(raised, CheckoutRejected)
    assert "expires_at" in str(raised)
    assert caplog.records == []


@pytest.mark.parametrize("status", [409, 429, 500, 503])
async def test_stripe_busy_or_down_is_waited_out(status: int) -> None:
    raised = await answered(status, {"type": "api_error", "message": "try later"})
    assert isinstance(raised, CheckoutUnavailable)
    # Stripe keeps a 5xx against the idempotency key and replays it: a retry must ask under another key.
    # A 409 (the key in use) or a 429 kept nothing.
    assert isinstance(raised, ServerErrorKept) == (status >= 500)


async def test_a_business_connect_account_refusing_the_platform_is_a_refusal_not_an_outage() -> None:
    """Nothing on-call does fixes another business's account, and waiting it out would hold every order sharing
    the partition: the order goes back to draft and a person is asked (`CheckoutRejected`)."""
    error = {
        "type": "invalid_request_error",
        "code": "account_invalid",
        "message": "The provided key does not have access to account 'acct_1Seller'",
    }
    raised = await answered(403, error, account="acct_1Seller")
    assert isinstance(raised, CheckoutRejected) and "acct_1Seller" in str(raised)
    assert KEY not in str(raised)
    # Named, so a retry can move to the account the business connected since (`handlers._checkout`).
    assert isinstance(raised, AccountRefused) and raised.account == "acct_1Seller"


async def test_a_403_on_a_connect_account_that_is_our_keys_fault_is_waited_out() -> None:
    """A restricted platform key lacks a permission: every Connect tenant would be refused for a mistake of ours."""
    error = {"type": "invalid_request_error", "message": f"The key {KEY} is restricted"}
    assert isinstance(await answered(403, error, account="acct_1Seller"), CheckoutUnavailable)
