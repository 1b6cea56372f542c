"""The Stripe port and its adapter: the official SDK, pointed at Stripe or at the sandbox.

Every call names the Connect account the object lives in (`Stripe-Account`), or none for the platform.
"""

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import httpx
import stripe
from stripe.params.checkout import SessionCreateParams

from schemas.envelope import Money
from sellmesh.subscriber import DependencyUnavailable
from services.payments.domain import CheckoutRequest, CheckoutSession
from services.payments.stripe_event import ChargeState, SessionState, charge_state, session_state
from services.payments.stripe_transport import HttpxTransport

log = logging.getLogger(__name__)
T = TypeVar("T")
PAGE_SIZE = 100


class CheckoutRejected(Exception):
    """The provider refused the request itself (invalid_request_error): the same request will be refused again."""


class AccountRefused(CheckoutRejected):
    """A business's own Connect account refused the platform (`account_invalid`): disconnected, or never ours."""

    def __init__(self, message: str, *, account: str) -> None:
        super().__init__(message)
        self.account = account


class CheckoutUnavailable(DependencyUnavailable):
    """The provider could not answer (5xx, 409, 429, network), or refused the caller (401, 403, idempotency_error):
    the same request may well succeed later, or once on-call fixed the key, so the subscriber waits it out
    (`RetryPolicy.unavailable_seconds`) instead of spending the message's attempts, then keeps it in the DLQ."""


class ServerErrorKept(CheckoutUnavailable):
    """Stripe answered 5xx. It keeps that answer against the request's idempotency key and replays it to every
    retry under the key for a day, so a retry must ask under another one (`domain.renewed_plan`)."""


class StripeGateway(Protocol):
    async def create_session(self, request: CheckoutRequest) -> CheckoutSession: ...

    async def expire_session(self, session_id: str, *, account: str | None) -> SessionState: ...

    async def retrieve_session(self, session_id: str, *, account: str | None) -> SessionState: ...

    async def find_session(self, payment_intent: str, *, account: str | None) -> SessionState | None: ...

    async def retrieve_charge(self, charge_id: str, *, account: str | None) -> ChargeState: ...

    async def refund(self, payment_intent: str, *, account: str | None, idempotency_key: str) -> str | None: ...

    async def list_events(
        self, *, since: int, types: Sequence[str], account: str | None
    ) -> list[Mapping[str, object]]: ...


def session_params(request: CheckoutRequest) -> SessionCreateParams:
    currency = request.total.currency.lower()  # Stripe spells currencies in lower case
    params: SessionCreateParams = {
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
    if request.settings.success_url:
        params["success_url"] = request.settings.success_url
    if request.settings.cancel_url:
        params["cancel_url"] = request.settings.cancel_url
    return params


def _is_transient(error: stripe.StripeError) -> bool:
    status = error.http_status
    # 409: a concurrent request holds the idempotency key; 429: rate limited. Both pass with time.
    return status is None or status >= 500 or status in (409, 429) or isinstance(error, stripe.RateLimitError)


def _options(account: str | None, **extra: str) -> Any:
    return {**({"stripe_account": account} if account else {}), **extra}


def _misconfigured(error: stripe.StripeError) -> str:
    """What on-call has to fix when Stripe refuses the caller rather than the request; never Stripe's own message,
    which may echo part of the key."""
    if isinstance(error, stripe.AuthenticationError) or error.http_status == 401:
        return "Stripe refused the API key (401): it was revoked, rotated or mistyped"
    if isinstance(error, stripe.PermissionError) or error.http_status == 403:
        return "the API key may not make this request (403): a restricted key, or no access to the Connect account"
    if isinstance(error, stripe.IdempotencyError):
        return "Stripe saw an idempotency key again with other parameters (idempotency_error)"
    return f"Stripe answered {error.http_status} ({type(error).__name__})"


def _code(error: stripe.StripeError) -> str | None:
    """Stripe's error code; the SDK leaves `code` unset on some classes (PermissionError), the body still has it."""
    body = error.json_body if isinstance(error.json_body, dict) else {}
    detail = body.get("error")
    return error.code or (str(detail.get("code")) if isinstance(detail, dict) and detail.get("code") else None)


def _classified(error: stripe.StripeError, account: str | None = None) -> CheckoutUnavailable | CheckoutRejected:
    """Only Stripe refusing the request itself (invalid_request_error) is a refusal the same request will meet
    again. A refused key, a missing permission or a clashing idempotency key is ours to fix, and the request then
    succeeds as it stands: it is waited out, then kept in the DLQ to redrive, and the order keeps awaiting it.
    The exception is a business's own Connect account refusing the platform: nothing on-call does fixes another
    business's account, and waiting would hold every order sharing the partition, so that is a refusal."""
    request_id = error.request_id or "none"
    if _is_transient(error):
        kind = ServerErrorKept if (error.http_status or 0) >= 500 else CheckoutUnavailable
        return kind(f"{type(error).__name__} ({error.http_status}): {error.user_message or error}")
    if account and _code(error) == "account_invalid":
        return AccountRefused(
            f"the Connect account {account} refused the platform ({error.http_status}); request {request_id}",
            account=account,
        )
    if isinstance(error, stripe.InvalidRequestError):
        # The SDK's message names the request id and Stripe's reason, never the API key.
        return CheckoutRejected(f"{type(error).__name__} ({error.http_status}): {error.user_message or error}")
    cause = _misconfigured(error)
    log.error("Stripe refused the caller, not the request", extra={"cause": cause, "stripe_request_id": request_id})
    return CheckoutUnavailable(f"{cause}; request {request_id}")


async def _call(call: Callable[[], Awaitable[T]], *, account: str | None = None) -> T:
    try:
        return await call()
    except stripe.StripeError as exc:
        raise _classified(exc, account) from exc


class StripeCheckoutGateway:
    """Checkout Sessions, Charges and Events with StripeClient's async methods.

    The SDK never retries on its own (max_network_retries=0): the subscriber wrapper's backoff is the one retry policy.
    """

    def __init__(self, *, api_key: str, base_url: str, http: httpx.AsyncClient, timeout_seconds: float = 10.0) -> None:
        transport = HttpxTransport(http, timeout_seconds=timeout_seconds)
        self._client = stripe.StripeClient(
            api_key, base_addresses={"api": base_url}, max_network_retries=0, http_client=transport
        )

    async def create_session(self, request: CheckoutRequest) -> CheckoutSession:
        options = _options(request.settings.stripe_account, idempotency_key=request.idempotency_key)
        sessions = self._client.v1.checkout.sessions
        session = await _call(
            lambda: sessions.create_async(params=session_params(request), options=options),
            account=request.settings.stripe_account,
        )
        if session.url is None or session.amount_total is None or session.currency is None:
            raise CheckoutRejected(f"session {session.id} came back without url, amount or currency")
        return CheckoutSession(
            id=session.id,
            url=session.url,
            total=Money(amount_minor=session.amount_total, currency=session.currency.upper()),
            expires_at=datetime.fromtimestamp(session.expires_at, UTC),
        )

    async def expire_session(self, session_id: str, *, account: str | None) -> SessionState:
        """Expire an open session; one that is no longer open is read back as it stands."""
        sessions = self._client.v1.checkout.sessions
        try:
            # A fixed idempotency key: a retry after a lost answer replays the expiry instead of failing on it.
            options = _options(account, idempotency_key=f"expire:{session_id}")
            expired = await _call(lambda: sessions.expire_async(session_id, options=options), account=account)
            return session_state(expired.to_dict())
        except CheckoutRejected:
            return await self.retrieve_session(session_id, account=account)

    async def retrieve_session(self, session_id: str, *, account: str | None) -> SessionState:
        sessions = self._client.v1.checkout.sessions
        found = await _call(lambda: sessions.retrieve_async(session_id, options=_options(account)))
        return session_state(found.to_dict())

    async def find_session(self, payment_intent: str, *, account: str | None) -> SessionState | None:
        sessions = self._client.v1.checkout.sessions
        params: Any = {"payment_intent": payment_intent, "limit": 1}
        page = await _call(lambda: sessions.list_async(params=params, options=_options(account)))
        return session_state(page.data[0].to_dict()) if page.data else None

    async def refund(self, payment_intent: str, *, account: str | None, idempotency_key: str) -> str | None:
        """Refund the PaymentIntent's charge in full; the refunded charge's id, or None when Stripe says it was
        refunded already (its `charge.refunded` event settles the attempt either way)."""
        refunds = self._client.v1.refunds
        options = _options(account, idempotency_key=idempotency_key)
        params: Any = {"payment_intent": payment_intent}
        try:
            made = await refunds.create_async(params=params, options=options)
        except stripe.StripeError as exc:
            if exc.code == "charge_already_refunded":
                return None
            raise _classified(exc, account) from exc
        charge = made.charge
        return charge if isinstance(charge, str) or charge is None else charge.id

    async def retrieve_charge(self, charge_id: str, *, account: str | None) -> ChargeState:
        charges = self._client.v1.charges
        found = await _call(lambda: charges.retrieve_async(charge_id, options=_options(account)))
        return charge_state(found.to_dict())

    async def list_events(self, *, since: int, types: Sequence[str], account: str | None) -> list[Mapping[str, object]]:
        """Every event of `types` created at or after `since`, oldest first (Stripe lists newest first)."""
        events = self._client.v1.events
        found: list[Mapping[str, object]] = []
        after: str | None = None
        while True:
            params: Any = {"created": {"gte": since}, "types": list(types), "limit": PAGE_SIZE}
            if after is not None:
                params["starting_after"] = after
            page = await _call(lambda: events.list_async(params=params, options=_options(account)))  # noqa: B023
            found.extend(event.to_dict() for event in page.data)
            if not page.has_more or not page.data:
                found.reverse()  # pages run newest first, and so do events within one second
                return found
            after = page.data[-1].id
