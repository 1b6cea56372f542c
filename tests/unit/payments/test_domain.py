"""Checkout rules as plain functions: what Stripe is asked to charge, and what is announced afterwards."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.envelope import Actor, ActorKind, Money
from schemas.orders import CommandRejected, OrderChanged, OrderLine, OrderSnapshot, OrderState, RejectionReason
from sellmesh.service import derived_id
from services.payments.domain import (
    MIN_AHEAD,
    CheckoutNotPossible,
    CheckoutPlan,
    CheckoutRequest,
    CheckoutSession,
    CheckoutSettings,
    ReturnUrls,
    StripeAccount,
    idempotency_key,
    kept_plan,
    link_expiry,
    moved_plan,
    plan_checkout,
    renewed_plan,
    wants_checkout,
    with_plan,
)
from services.payments.events import REASON_LENGTH, checkout_refused, link_created

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
REQUESTED_AT = datetime(2026, 3, 4, 10, 7, 30, tzinfo=UTC)


def line(
    sku: str = "MUG-1", *, name: str = "Mug", quantity: int = 2, cents: int = 1250, currency: str = "USD"
) -> OrderLine:
    return OrderLine(sku=sku, name=name, quantity=quantity, unit_price=Money(amount_minor=cents, currency=currency))


def order_event(*lines: OrderLine, total: int | None = None, **overrides: Any) -> OrderChanged:
    lines = lines or (line(), line("TEE-2", name="T-shirt", quantity=1, cents=2000))
    amount = sum(item.unit_price.amount_minor * item.quantity for item in lines) if total is None else total
    snapshot: dict[str, Any] = {
        "order_id": ORDER,
        "state": OrderState.AWAITING_PAYMENT,
        "version": 7,
        "lines": lines,
        "total": Money(amount_minor=amount, currency="USD"),
    }
    snapshot.update(overrides.pop("order", {}))
    fields: dict[str, Any] = {
        "event_id": uuid.UUID("00000000-0000-4000-8000-0000000000e1"),
        "tenant_id": TENANT,
        "correlation_id": uuid.UUID("00000000-0000-4000-8000-0000000000c1"),
        "occurred_at": REQUESTED_AT,
        "producer": "orders",
        "order_id": ORDER,
        "change": "checkout_requested",
        "actor": Actor(kind=ActorKind.AI),
        "order": OrderSnapshot(**snapshot),
    }
    fields.update(overrides)
    return OrderChanged(**fields)


def test_only_a_checkout_request_asks_for_a_payment_link() -> None:
    rejected = CommandRejected(
        **{k: v for k, v in order_event().model_dump().items() if k not in {"type", "change", "order"}},
        command_type="request_checkout",
        reason=RejectionReason.EMPTY_ORDER,
    )
    assert wants_checkout(order_event())
    assert not wants_checkout(order_event(change="item_added"))
    assert not wants_checkout(rejected)


def test_line_items_come_from_the_snapshot_lines_in_order() -> None:
    request = plan_checkout(order_event(), now=REQUESTED_AT)
    assert [(item.name, item.unit_amount_minor, item.quantity) for item in request.lines] == [
        ("Mug", 1250, 2),
        ("T-shirt", 2000, 1),
    ]
    assert request.total == Money(amount_minor=4500, currency="USD")


def test_a_line_with_a_blank_name_is_named_by_its_sku() -> None:
    request = plan_checkout(order_event(line(name="  "), total=2500), now=REQUESTED_AT)
    assert request.lines[0].name == "MUG-1"


def test_the_session_points_back_at_the_order_and_tenant() -> None:
    request = plan_checkout(order_event(), now=REQUESTED_AT)
    assert request.client_reference_id == str(ORDER)
    assert dict(request.metadata) == {"tenant_id": str(TENANT), "order_id": str(ORDER)}
    assert (request.tenant_id, request.order_id) == (TENANT, ORDER)


def test_the_attempt_is_the_order_version_and_names_the_idempotency_key() -> None:
    request = plan_checkout(order_event(), now=REQUESTED_AT)
    assert request.attempt == 7
    assert request.idempotency_key == f"checkout:{ORDER}:7"


def test_a_replay_minutes_later_asks_for_exactly_the_same_session() -> None:
    first = plan_checkout(order_event(), now=REQUESTED_AT)
    again = plan_checkout(order_event(), now=REQUESTED_AT + timedelta(minutes=20))
    assert again == first


def test_the_link_expires_an_hour_after_checkout_was_requested() -> None:
    request = plan_checkout(order_event(), now=REQUESTED_AT + timedelta(seconds=3))
    assert request.expires_at == REQUESTED_AT + timedelta(hours=1)


def test_a_request_handled_late_still_gets_a_link_stripe_accepts() -> None:
    now = REQUESTED_AT + timedelta(hours=3)
    expiry = link_expiry(REQUESTED_AT, now=now)
    assert timedelta(minutes=30) < expiry - now <= timedelta(hours=1)
    assert link_expiry(REQUESTED_AT, now=now + timedelta(minutes=2)) == expiry


def test_a_first_try_plans_the_expiry_the_request_time_gives() -> None:
    assert kept_plan(None, requested_at=REQUESTED_AT, now=REQUESTED_AT) == CheckoutPlan(
        REQUESTED_AT + timedelta(hours=1), urls=ReturnUrls(), account=StripeAccount()
    )


def test_a_retry_keeps_the_first_tries_plan_while_stripe_would_take_its_expiry() -> None:
    stored = CheckoutPlan(REQUESTED_AT + timedelta(hours=1), urls=ReturnUrls(), account=StripeAccount())
    # 22 minutes on, a plan made now would hang off a bucket of now instead: the stored one is kept.
    assert kept_plan(stored, requested_at=REQUESTED_AT, now=REQUESTED_AT + timedelta(minutes=22)) == stored
    assert kept_plan(stored, requested_at=REQUESTED_AT, now=stored.expires_at - MIN_AHEAD) == stored


def test_a_retry_too_near_the_kept_expiry_asks_anew_under_the_next_key() -> None:
    stored = CheckoutPlan(REQUESTED_AT + timedelta(hours=1), generation=1)
    now = stored.expires_at - MIN_AHEAD + timedelta(seconds=1)
    renewed = kept_plan(stored, requested_at=REQUESTED_AT, now=now)
    assert renewed.generation == 2
    assert timedelta(minutes=30) < renewed.expires_at - now <= timedelta(hours=1)


THANKS = ReturnUrls(success_url="https://shop.example/thanks", cancel_url="https://shop.example/cart")
MOVED = ReturnUrls(success_url="https://shop.example/merci", cancel_url=None)


def test_a_retry_keeps_the_first_tries_return_urls_though_the_owner_changed_them() -> None:
    first = kept_plan(None, requested_at=REQUESTED_AT, now=REQUESTED_AT, urls=THANKS, account=StripeAccount("acct_1"))
    again = kept_plan(first, requested_at=REQUESTED_AT, now=REQUESTED_AT + timedelta(minutes=5), urls=MOVED)
    assert again == first
    settings = CheckoutSettings(success_url=MOVED.success_url, stripe_account="acct_1")
    request = with_plan(plan_checkout(order_event(), now=REQUESTED_AT, settings=settings), again)
    assert request.settings == CheckoutSettings(THANKS.success_url, THANKS.cancel_url, "acct_1")
    assert (request.expires_at, request.idempotency_key) == (first.expires_at, idempotency_key(ORDER, 7))


def test_a_plan_kept_before_its_urls_were_takes_the_tenants_urls_of_now() -> None:
    stored = CheckoutPlan(REQUESTED_AT + timedelta(hours=1))
    kept = kept_plan(stored, requested_at=REQUESTED_AT, now=REQUESTED_AT + timedelta(minutes=5), urls=MOVED)
    assert kept == CheckoutPlan(stored.expires_at, urls=MOVED, account=StripeAccount())


def test_a_plan_asked_for_anew_takes_the_urls_of_now_with_its_new_key() -> None:
    stored = CheckoutPlan(REQUESTED_AT + timedelta(hours=1), urls=THANKS)
    renewed = kept_plan(stored, requested_at=REQUESTED_AT, now=REQUESTED_AT + timedelta(hours=3), urls=MOVED)
    assert (renewed.generation, renewed.urls) == (1, MOVED)


OLD_ACCOUNT, NEW_ACCOUNT = StripeAccount("acct_old"), StripeAccount("acct_new")


def retry(stored: CheckoutPlan, account: StripeAccount, *, after: timedelta) -> CheckoutRequest:
    """A retry `after` the first try, once the tenant's Connect account is `account`."""
    settings = CheckoutSettings(stripe_account=account.id)
    plan = kept_plan(stored, requested_at=REQUESTED_AT, now=REQUESTED_AT + after, account=account)
    return with_plan(plan_checkout(order_event(), now=REQUESTED_AT + after, settings=settings), plan)


def test_a_retry_asks_the_first_tries_connect_account_though_the_tenant_moved_to_another() -> None:
    first = kept_plan(None, requested_at=REQUESTED_AT, now=REQUESTED_AT, account=OLD_ACCOUNT)
    request = retry(first, NEW_ACCOUNT, after=timedelta(minutes=5))
    assert request.settings.stripe_account == OLD_ACCOUNT.id
    assert (request.expires_at, request.idempotency_key) == (first.expires_at, idempotency_key(ORDER, 7))


def test_a_retry_of_a_try_on_the_platform_account_stays_there_once_the_tenant_has_a_connect_account() -> None:
    first = kept_plan(None, requested_at=REQUESTED_AT, now=REQUESTED_AT)
    assert first.account == StripeAccount(None)
    assert retry(first, NEW_ACCOUNT, after=timedelta(minutes=5)).settings.stripe_account is None


def test_a_plan_kept_before_its_account_was_takes_the_tenants_account_of_now_and_keeps_it() -> None:
    stored = CheckoutPlan(REQUESTED_AT + timedelta(hours=1), urls=THANKS)
    assert retry(stored, OLD_ACCOUNT, after=timedelta(minutes=5)).settings.stripe_account == OLD_ACCOUNT.id
    kept = kept_plan(stored, requested_at=REQUESTED_AT, now=REQUESTED_AT, account=OLD_ACCOUNT)
    assert kept == CheckoutPlan(stored.expires_at, urls=THANKS, account=OLD_ACCOUNT)
    assert retry(kept, NEW_ACCOUNT, after=timedelta(minutes=10)).settings.stripe_account == OLD_ACCOUNT.id


def test_a_plan_asked_for_anew_takes_the_account_of_now_with_its_new_key() -> None:
    first = kept_plan(None, requested_at=REQUESTED_AT, now=REQUESTED_AT, account=OLD_ACCOUNT)
    request = retry(first, NEW_ACCOUNT, after=timedelta(hours=3))
    assert (request.settings.stripe_account, request.idempotency_key) == (NEW_ACCOUNT.id, idempotency_key(ORDER, 7, 1))


def test_the_first_generation_keeps_the_key_earlier_releases_used() -> None:
    assert idempotency_key(ORDER, 7) == idempotency_key(ORDER, 7, 0) == f"checkout:{ORDER}:7"
    assert idempotency_key(ORDER, 7, 2) == f"checkout:{ORDER}:7:2"


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (order_event(total=4400), "sum to 4500"),
        (order_event(order={"lines": (), "total": Money(amount_minor=0, currency="USD")}), "0 lines"),
        (order_event(line(), line("EU-1", currency="EUR"), total=5000), "mixes currencies"),
        (order_event(order={"state": OrderState.DRAFT}), "not awaiting payment"),
        (order_event(order={"order_id": uuid.uuid4()}), "carries a snapshot"),
        (order_event(line(cents=0), total=0), "sum to 0"),
    ],
)
def test_refuses_an_order_that_cannot_be_charged_as_it_stands(event: OrderChanged, reason: str) -> None:
    with pytest.raises(CheckoutNotPossible, match=reason):
        plan_checkout(event, now=REQUESTED_AT)


def test_the_link_event_answers_the_order_event() -> None:
    event = order_event()
    request = plan_checkout(event, now=REQUESTED_AT)
    session = CheckoutSession(
        id="cs_test_1", url="https://pay/cs_test_1", total=request.total, expires_at=request.expires_at
    )
    link = link_created(event, request, session, at=REQUESTED_AT + timedelta(seconds=1))
    # The id derives from the order event, so a redelivered request queues the same link event, taken once.
    assert (link.event_id, link.tenant_id, link.correlation_id, link.causation_id) == (
        derived_id(event.event_id, "link"),
        TENANT,
        event.correlation_id,
        event.event_id,
    )
    assert (link.producer, link.occurred_at) == ("payments", REQUESTED_AT + timedelta(seconds=1))
    assert (link.order_id, link.checkout_session_id, link.url) == (ORDER, "cs_test_1", "https://pay/cs_test_1")
    assert link.amount == request.total
    assert link.expires_at == request.expires_at


def test_refuses_to_announce_a_session_that_charges_another_amount() -> None:
    event = order_event()
    request = plan_checkout(event, now=REQUESTED_AT)
    wrong = CheckoutSession(
        id="cs_test_2", url="https://pay", total=Money(amount_minor=1, currency="USD"), expires_at=request.expires_at
    )
    with pytest.raises(CheckoutNotPossible, match="charges"):
        link_created(event, request, wrong, at=REQUESTED_AT)


def test_a_refused_checkout_answers_the_order_event_under_an_id_derived_from_it() -> None:
    event = order_event()
    refused = checkout_refused(event, reason="x" * (REASON_LENGTH + 1), at=REQUESTED_AT)
    assert (refused.event_id, refused.tenant_id, refused.correlation_id, refused.causation_id) == (
        derived_id(event.event_id, "refused"),
        TENANT,
        event.correlation_id,
        event.event_id,
    )
    assert (refused.producer, refused.occurred_at) == ("payments", REQUESTED_AT)
    assert (refused.order_id, refused.order_version, refused.reason) == (ORDER, 7, "x" * REASON_LENGTH)


def test_a_plan_whose_account_refused_the_platform_moves_to_the_tenants_account_of_now_under_a_new_key() -> None:
    stored = CheckoutPlan(REQUESTED_AT + timedelta(hours=1), generation=1, urls=THANKS, account=OLD_ACCOUNT)
    now = REQUESTED_AT + timedelta(minutes=5)
    moved = moved_plan(stored, requested_at=REQUESTED_AT, now=now, urls=MOVED, account=NEW_ACCOUNT)
    assert moved == CheckoutPlan(REQUESTED_AT + timedelta(hours=1), 2, MOVED, NEW_ACCOUNT)
    # Off Connect altogether: the platform's own account is another account too.
    platform = moved_plan(stored, requested_at=REQUESTED_AT, now=now, account=StripeAccount())
    assert platform is not None and platform.account == StripeAccount()


def test_the_refusal_stands_when_the_tenant_still_names_the_refusing_account_or_none_was_kept() -> None:
    stored = CheckoutPlan(REQUESTED_AT + timedelta(hours=1), urls=THANKS, account=OLD_ACCOUNT)
    assert moved_plan(stored, requested_at=REQUESTED_AT, now=REQUESTED_AT, account=OLD_ACCOUNT) is None
    unknown = CheckoutPlan(REQUESTED_AT + timedelta(hours=1))
    assert moved_plan(unknown, requested_at=REQUESTED_AT, now=REQUESTED_AT, account=NEW_ACCOUNT) is None


def test_a_plan_renewed_after_a_kept_5xx_asks_the_same_under_the_next_key() -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    stored = CheckoutPlan(now + timedelta(minutes=50), 2, ReturnUrls("https://shop/ok", None), StripeAccount("acct_1"))
    renewed = renewed_plan(stored, requested_at=now - timedelta(minutes=10), now=now)
    assert renewed == replace(stored, generation=3)
    # Hours later (an outage, a redrive), the kept expiry is too near for Stripe: a fresh one.
    late = renewed_plan(stored, requested_at=now - timedelta(minutes=10), now=now + timedelta(hours=3))
    assert (late.generation, late.urls, late.account) == (3, stored.urls, stored.account)
    assert late.expires_at > now + timedelta(hours=3)
