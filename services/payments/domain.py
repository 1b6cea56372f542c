"""Checkout rules: what Stripe is asked to charge for an order, built only from the order event's own snapshot."""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, TypeGuard
from uuid import UUID

from schemas.envelope import ActorKind, Money
from schemas.orders import OrderChanged, OrderEvent, OrderLine, OrderState

PRODUCER: Final = "payments"
LINK_LIFETIME: Final = timedelta(hours=1)
# Stripe refuses an expires_at less than 30 minutes ahead; keep a margin for the request's own latency and for
# our clock running behind Stripe's.
FRESH_FOR: Final = timedelta(minutes=20)
STALE_BUCKET_SECONDS: Final = 15 * 60
# A kept expiry nearer than this is asked for anew: Stripe refuses one less than 30 minutes ahead (the same
# margin as FRESH_FOR).
MIN_AHEAD: Final = timedelta(minutes=35)
MAX_LINE_ITEMS: Final = 100  # Stripe's limit for a payment-mode session


class CheckoutNotPossible(Exception):
    """The order cannot be charged as it stands (empty, inconsistent totals); retrying cannot change that."""


@dataclass(frozen=True)
class CheckoutLine:
    name: str
    unit_amount_minor: int
    quantity: int


@dataclass(frozen=True)
class CheckoutSettings:
    """The tenant's own checkout choices: where Stripe sends the customer back, and its Connect account."""

    success_url: str | None = None
    cancel_url: str | None = None
    stripe_account: str | None = None


@dataclass(frozen=True)
class CheckoutRequest:
    """One attempt to get paid for one order; `metadata` goes on the session and on its PaymentIntent."""

    tenant_id: UUID
    order_id: UUID
    attempt: int
    lines: tuple[CheckoutLine, ...]
    total: Money
    client_reference_id: str
    metadata: Mapping[str, str]
    expires_at: datetime
    idempotency_key: str
    settings: CheckoutSettings = CheckoutSettings()


@dataclass(frozen=True)
class CheckoutSession:
    """What the payment provider made of a CheckoutRequest."""

    id: str
    url: str
    total: Money
    expires_at: datetime


def wants_checkout(event: OrderEvent) -> TypeGuard[OrderChanged]:
    return isinstance(event, OrderChanged) and event.change == "checkout_requested"


def wants_money_back(event: OrderEvent) -> TypeGuard[OrderChanged]:
    """A person of the business refunded the order, or cancelled it once paid: the customer's money goes back.
    Not payments' own `refunded` (actor system), which reports a refund Stripe already made."""
    return (
        isinstance(event, OrderChanged)
        and event.change in ("refunded", "cancelled")
        and event.actor.kind in (ActorKind.OWNER, ActorKind.STAFF)
    )


def refund_key(checkout_session_id: str) -> str:
    """One refund per paid session, however often the order's event is delivered."""
    return f"refund:{checkout_session_id}"


def wants_sessions_closed(event: OrderEvent) -> TypeGuard[OrderChanged]:
    """A cancelled order must not be payable through a link still open for it."""
    return isinstance(event, OrderChanged) and event.change == "cancelled"


@dataclass(frozen=True)
class ReturnUrls:
    """Where Stripe sends the customer back (None: not sent); part of the parameters an idempotency key is tied to."""

    success_url: str | None = None
    cancel_url: str | None = None


@dataclass(frozen=True)
class StripeAccount:
    """The account a session is made in (sent as `Stripe-Account`); `id` None: the platform's own account.

    Stripe scopes an idempotency key to the account, so a retry sent to another account makes a second session."""

    id: str | None = None


@dataclass(frozen=True)
class CheckoutPlan:
    """What a checkout attempt asks Stripe for, kept from its first try: the expiry, the return URLs, the account,
    and which idempotency key. `urls` or `account` None: a plan kept before those were, which takes the tenant's
    current ones (and keeps them from then on)."""

    expires_at: datetime
    generation: int = 0
    urls: ReturnUrls | None = None
    account: StripeAccount | None = None


def idempotency_key(order_id: UUID, attempt: int, generation: int = 0) -> str:
    return f"checkout:{order_id}:{attempt}" + (f":{generation}" if generation else "")


def kept_plan(
    stored: CheckoutPlan | None,
    *,
    requested_at: datetime,
    now: datetime,
    urls: ReturnUrls = ReturnUrls(),
    account: StripeAccount = StripeAccount(),
) -> CheckoutPlan:
    """The plan this try asks with: the one an earlier try kept, so Stripe replays that try's session.

    `urls` and `account` are the tenant's as they are now; a plan keeps those of its first try, since an owner
    changing the URLs between a try whose answer was lost and its retry would otherwise get an idempotency_error,
    and changing the account would get a second session, payable beside the first, in the other account.
    A kept expiry Stripe would now refuse (a retry hours later: an outage, a DLQ replay) is asked for anew, under
    the next generation's key and with the URLs and account of now. Whatever an earlier try made at Stripe then
    lapses unused: its link was never recorded, so it never reached the customer.
    """
    if stored is None:
        return CheckoutPlan(link_expiry(requested_at, now=now), urls=urls, account=account)
    if stored.expires_at - now >= MIN_AHEAD:
        return replace(
            stored,
            urls=urls if stored.urls is None else stored.urls,
            account=account if stored.account is None else stored.account,
        )
    return CheckoutPlan(link_expiry(requested_at, now=now), stored.generation + 1, urls, account)


def moved_plan(
    stored: CheckoutPlan,
    *,
    requested_at: datetime,
    now: datetime,
    urls: ReturnUrls = ReturnUrls(),
    account: StripeAccount = StripeAccount(),
) -> CheckoutPlan | None:
    """After the plan's account refused the platform (`account_invalid`: the business disconnected it): a plan
    under the tenant's account of now, with the next generation's key, if that is another account; None when it
    is the same one, whose refusal then stands.

    Nothing the earlier tries made can reach the customer: a try whose session was recorded is never retried, so
    any session they left in the refusing account had its link lost with its answer."""
    if stored.account is None or stored.account == account:
        return None
    return CheckoutPlan(link_expiry(requested_at, now=now), stored.generation + 1, urls, account)


def renewed_plan(stored: CheckoutPlan, *, requested_at: datetime, now: datetime) -> CheckoutPlan:
    """After Stripe answered the plan's request 5xx, which it replays to every retry under the same key: the same
    request under the next generation's key (a fresh expiry if the kept one is too near).

    A session a 5xx left made at Stripe has no link anyone saw, so it cannot be paid; it lapses unused."""
    expires_at = stored.expires_at if stored.expires_at - now >= MIN_AHEAD else link_expiry(requested_at, now=now)
    return replace(stored, expires_at=expires_at, generation=stored.generation + 1)


def named_now(settings: CheckoutSettings) -> tuple[ReturnUrls, StripeAccount]:
    """The return URLs and Connect account the tenant's settings name now (a plan keeps its first try's)."""
    return ReturnUrls(settings.success_url, settings.cancel_url), StripeAccount(settings.stripe_account)


def with_plan(request: CheckoutRequest, plan: CheckoutPlan) -> CheckoutRequest:
    settings = request.settings
    urls_now, account_now = named_now(settings)
    urls, account = plan.urls or urls_now, plan.account or account_now
    return replace(
        request,
        expires_at=plan.expires_at,
        idempotency_key=idempotency_key(request.order_id, request.attempt, plan.generation),
        settings=replace(settings, success_url=urls.success_url, cancel_url=urls.cancel_url, stripe_account=account.id),
    )


def link_expiry(requested_at: datetime, *, now: datetime) -> datetime:
    """When the link lapses: an hour after checkout was requested.

    A request handled late (an outage, a DLQ replay) would be refused for expiring too soon, so it gets an hour
    from a coarse bucket of now instead. Retries of one attempt reuse the expiry its first try kept
    (`kept_plan`); this only picks that first one, and hangs it off the request time so that a replay whose
    kept plan was lost with its database still asks Stripe for the same session.
    """
    if now - requested_at <= FRESH_FOR:
        return requested_at + LINK_LIFETIME
    bucket = int(now.timestamp()) // STALE_BUCKET_SECONDS * STALE_BUCKET_SECONDS
    return datetime.fromtimestamp(bucket, UTC) + LINK_LIFETIME


def _checkout_line(line: OrderLine) -> CheckoutLine:
    # Stripe needs a product name; a line whose name is blank still has its SKU.
    name = line.name.strip() or line.sku
    return CheckoutLine(name=name, unit_amount_minor=line.unit_price.amount_minor, quantity=line.quantity)


def plan_checkout(
    event: OrderChanged, *, now: datetime, settings: CheckoutSettings = CheckoutSettings()
) -> CheckoutRequest:
    """The session to ask for: lines and total from the snapshot, keyed by order version so a replay reuses it."""
    order = event.order
    if order.order_id != event.order_id:
        raise CheckoutNotPossible(f"event for order {event.order_id} carries a snapshot of {order.order_id}")
    if order.state is not OrderState.AWAITING_PAYMENT:
        raise CheckoutNotPossible(f"order {order.order_id} is {order.state.value}, not awaiting payment")
    if not order.lines or len(order.lines) > MAX_LINE_ITEMS:
        raise CheckoutNotPossible(f"order {order.order_id} has {len(order.lines)} lines; 1 to {MAX_LINE_ITEMS} fit")
    if any(line.unit_price.currency != order.total.currency for line in order.lines):
        raise CheckoutNotPossible(f"order {order.order_id} mixes currencies")
    lines_sum = sum(line.unit_price.amount_minor * line.quantity for line in order.lines)
    # Stripe charges the sum of the lines; if that is not the order's total, charging would be wrong either way.
    if lines_sum != order.total.amount_minor or lines_sum == 0:
        raise CheckoutNotPossible(
            f"order {order.order_id} lines sum to {lines_sum}, total is {order.total.amount_minor}"
        )
    metadata = {"tenant_id": str(event.tenant_id), "order_id": str(order.order_id)}
    return CheckoutRequest(
        tenant_id=event.tenant_id,
        order_id=order.order_id,
        attempt=order.version,
        lines=tuple(_checkout_line(line) for line in order.lines),
        total=order.total,
        client_reference_id=str(order.order_id),
        metadata=metadata,
        expires_at=link_expiry(event.occurred_at, now=now),
        idempotency_key=idempotency_key(order.order_id, order.version),
        settings=settings,
    )


def check_session_total(request: CheckoutRequest, session: CheckoutSession) -> None:
    """Refuses a session that would charge another amount than the order's total: it must not be announced."""
    if session.total != request.total:
        raise CheckoutNotPossible(f"session {session.id} charges {session.total}, order total is {request.total}")
