"""The checkout port and its Stripe adapter: the official SDK, pointed at Stripe or at the sandbox."""

import asyncio
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
import stripe
from stripe.params.checkout import SessionCreateParams

from schemas.envelope import Money
from services.payments.domain import CheckoutRequest, CheckoutSession


class CheckoutRejected(Exception):
    """The provider refused the request itself (4xx): the same request will be refused again."""


class CheckoutUnavailable(Exception):
    """The provider could not answer (5xx, 409, 429, network): the same request may well succeed later."""


class CheckoutGateway(Protocol):
    async def create_session(self, request: CheckoutRequest) -> CheckoutSession: ...


def session_params(request: CheckoutRequest) -> SessionCreateParams:
    currency = request.total.currency.lower()  # Stripe spells currencies in lower case
    return {
        "mode": "payment",
        "line_items": [
            {
                "quantity": line.quantity,
                "price_data": {
                    "currency": currency,
                    "unit_amount": line.unit_amount_minor,
                    "product_data": {"name": line.name},
                },
            }
            for line in request.lines
        ],
        "client_reference_id": request.client_reference_id,
        "metadata": dict(request.metadata),
        # Copied to the PaymentIntent, so payment_intent.* events can be traced to the order too.
        "payment_intent_data": {"metadata": dict(request.metadata)},
        "expires_at": int(request.expires_at.timestamp()),
    }


def _is_transient(error: stripe.StripeError) -> bool:
    status = error.http_status
    # 409: a concurrent request holds the idempotency key; 429: rate limited. Both pass with time.
    return status is None or status >= 500 or status in (409, 429)


class _HttpxTransport(stripe.HTTPClient):
    """stripe-python's transport over an httpx.AsyncClient the caller owns.

    The SDK's own HTTPXClient posts form bodies as httpx's deprecated `data=<str>` (stripe 16.1
    with httpx 0.28), which warns on every call and fails under warnings-as-errors; this sends `content=`.
    """

    name = "sellmesh-httpx"

    def __init__(self, http: httpx.AsyncClient, *, timeout_seconds: float) -> None:
        super().__init__()
        self._http = http
        self._timeout = timeout_seconds

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = await self._http.request(
                method, url, headers=dict(headers), content=post_data, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            message = f"could not reach Stripe ({type(exc).__name__})"
            raise stripe.APIConnectionError(message, should_retry=True) from exc  # type: ignore[no-untyped-call]
        return response.content, response.status_code, response.headers

    def sleep_async(self, secs: float) -> Awaitable[None]:
        return asyncio.sleep(secs)

    async def close_async(self) -> None:
        """Nothing to close: the httpx client belongs to whoever passed it in."""


class StripeCheckoutGateway:
    """Creates Checkout Sessions with StripeClient's async methods.

    The SDK never retries on its own (max_network_retries=0): the subscriber wrapper's backoff is the one retry policy.
    """

    def __init__(self, *, api_key: str, base_url: str, http: httpx.AsyncClient, timeout_seconds: float = 10.0) -> None:
        transport = _HttpxTransport(http, timeout_seconds=timeout_seconds)
        self._client = stripe.StripeClient(
            api_key, base_addresses={"api": base_url}, max_network_retries=0, http_client=transport
        )

    async def create_session(self, request: CheckoutRequest) -> CheckoutSession:
        try:
            session = await self._client.v1.checkout.sessions.create_async(
                params=session_params(request), options={"idempotency_key": request.idempotency_key}
            )
        except stripe.StripeError as exc:
            # The SDK's message names the request id and Stripe's reason, never the API key.
            kind = CheckoutUnavailable if _is_transient(exc) else CheckoutRejected
            raise kind(f"{type(exc).__name__} ({exc.http_status}): {exc.user_message or exc}") from exc
        if session.url is None or session.amount_total is None or session.currency is None:
            raise CheckoutRejected(f"session {session.id} came back without url, amount or currency")
        return CheckoutSession(
            id=session.id,
            url=session.url,
            total=Money(amount_minor=session.amount_total, currency=session.currency.upper()),
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        )
