"""The reconciler against the sandbox and a migrated database (SQLite and PostgreSQL): Stripe's events in, one
state change per fact, each with its audit row and payments event, whatever the order and number of deliveries."""

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import OrderChanged, OrderState
from sellmesh.db import session_scope
from sellmesh.subscriber import PermanentError
from services.gateway.store import Tenant
from services.orders.query import taken_back_by_person
from services.orders.tables import AuditRow, OrderRow
from services.payments.domain import CheckoutPlan, CheckoutRequest, CheckoutSession, ReturnUrls
from services.payments.handlers import on_order_event
from services.payments.reconciler import Reconciler
from services.payments.settlement import Attempt, Cause
from services.payments.store import PaymentAttemptRow, PaymentStore
from services.payments.stripe_event import ChargeState, SessionState
from services.payments.stripe_gateway import CheckoutUnavailable, ServerErrorKept, StripeCheckoutGateway
from services.payments.tables import CheckoutPlanRow
from tests.integration.conftest import KEY, Sandbox
from tests.integration.payment_shop import PaymentShop, add_tenant, after_a_lost_answer, checkout_requested, place_order

pytestmark = pytest.mark.integration


def escalate(attempt: Attempt, received: str, cause: Cause, at: datetime) -> RequestHandoff:
    """Stands for orders knowing the conversation: every mismatch can reach the customer's conversation."""
    return RequestHandoff(
        event_id=uuid.uuid4(),
        tenant_id=attempt.tenant_id,
        correlation_id=cause.correlation_id,
        occurred_at=at,
        producer="payments",
        conversation_id=f"conv-{attempt.order_id}",
        actor=Actor(kind=ActorKind.SYSTEM, id="payments"),
        reason=HandoffReason.PAYMENT_MISMATCH,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c",
        note=f"received {received}",
    )


@pytest_asyncio.fixture
async def shop(sandbox: Sandbox, migrated_engine: Engine) -> AsyncIterator[PaymentShop]:
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        reconciler = Reconciler(stripe=gateway, engine=migrated_engine, handoff_for=escalate)
        yield PaymentShop(migrated_engine, sandbox, gateway, reconciler, add_tenant(migrated_engine))


def set_recorded_total(engine: Engine, attempt: PaymentAttemptRow, *, amount: int, currency: str = "EUR") -> None:
    """Makes the attempt's recorded total disagree with what the session charges."""
    with session_scope(engine) as session:
        statement = update(PaymentAttemptRow).where(col(PaymentAttemptRow.id) == attempt.id)
        session.exec(statement.values(amount_minor=amount, currency=currency))


async def test_a_paid_session_marks_the_attempt_paid_once_however_often_it_is_told(shop: PaymentShop) -> None:
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    for _ in range(3):
        await shop.deliver(completed)
    paid = shop.attempt(attempt.order_id)
    assert (paid.status, paid.payment_intent_id is not None) == ("paid", True)
    assert shop.facts(attempt.order_id) == ["link_created", "paid"]
    assert shop.story(attempt.order_id) == [("", "open"), ("open", "paid")]


async def test_a_delayed_payment_waits_for_its_outcome(shop: PaymentShop) -> None:
    succeeding, failing = await shop.checkout(), await shop.checkout()
    for attempt in (succeeding, failing):
        shop.sandbox.hook(attempt.checkout_session_id, "pay_delayed")
        [completed] = await shop.stripe_events(attempt.checkout_session_id)
        await shop.deliver(completed)
        assert shop.attempt(attempt.order_id).status == "open"
    shop.sandbox.hook(succeeding.checkout_session_id, "delayed_succeeded")
    shop.sandbox.hook(failing.checkout_session_id, "delayed_failed")
    for attempt in (succeeding, failing):
        for body in await shop.stripe_events(attempt.checkout_session_id):
            await shop.deliver(body)
    assert shop.facts(succeeding.order_id) == ["link_created", "paid"]
    assert shop.facts(failing.order_id) == ["link_created", "failed"]


async def test_events_out_of_order_never_move_a_payment_backwards(shop: PaymentShop) -> None:
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    shop.sandbox.hook(attempt.checkout_session_id, "refund")
    completed, refunded = await shop.stripe_events(attempt.checkout_session_id)
    await shop.deliver(refunded)  # the refund first: the payment is recorded on the way
    await shop.deliver(completed)
    await shop.deliver(refunded)
    assert shop.attempt(attempt.order_id).status == "refunded"
    assert shop.facts(attempt.order_id) == ["link_created", "paid", "refunded"]
    assert shop.story(attempt.order_id) == [("", "open"), ("open", "paid"), ("paid", "refunded")]


async def test_an_expired_session_is_announced_once_and_a_dispute_is_recorded(shop: PaymentShop) -> None:
    lapsed, disputed = await shop.checkout(), await shop.checkout()
    await shop.gateway.expire_session(lapsed.checkout_session_id, account=None)
    shop.sandbox.hook(disputed.checkout_session_id)
    shop.sandbox.hook(disputed.checkout_session_id, "dispute")
    for attempt in (lapsed, disputed):
        for body in await shop.stripe_events(attempt.checkout_session_id) * 2:
            await shop.deliver(body)
    assert shop.facts(lapsed.order_id) == ["link_created", "expired"]
    assert shop.facts(disputed.order_id) == ["link_created", "paid", "disputed"]


@pytest.mark.parametrize(("amount", "currency"), [(2400, "EUR"), (2500, "USD")], ids=["amount", "currency"])
async def test_money_that_is_not_the_orders_total_is_a_mismatch_not_a_payment(
    shop: PaymentShop, amount: int, currency: str
) -> None:
    attempt = await shop.checkout()
    set_recorded_total(shop.engine, attempt, amount=amount, currency=currency)
    shop.sandbox.hook(attempt.checkout_session_id)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    await shop.deliver(completed)
    await shop.deliver(completed)
    assert shop.attempt(attempt.order_id).status == "mismatch"
    assert shop.facts(attempt.order_id) == ["link_created", "mismatch"]
    [handoff] = shop.handoffs(f"conv-{attempt.order_id}")
    assert (handoff["reason"], handoff["actor"]["kind"]) == ("payment_mismatch", "system")


async def test_an_event_for_an_unknown_session_or_another_tenant_is_kept_not_applied(shop: PaymentShop) -> None:
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    with pytest.raises(PermanentError, match="rejected"):
        await shop.deliver(completed, tenant_id=add_tenant(shop.engine))  # routed to another tenant
    other_order = {**completed["data"]["object"]["metadata"], "order_id": str(uuid.uuid4())}
    renamed = {**completed, "data": {"object": {**completed["data"]["object"], "metadata": other_order}}}
    with pytest.raises(PermanentError, match="rejected"):
        await shop.deliver(renamed)  # names another order of this tenant
    unknown = {**completed, "id": "evt_unknown", "data": {"object": {**completed["data"]["object"], "id": "cs_nope"}}}
    with pytest.raises(PermanentError, match="unknown"):
        await shop.deliver(unknown)
    assert shop.attempt(attempt.order_id).status == "open"
    await shop.deliver(completed)
    assert shop.attempt(attempt.order_id).status == "paid"


async def test_an_unrecorded_session_that_expired_is_nothing_to_keep(shop: PaymentShop) -> None:
    """A late checkout retry asks for a session anew and leaves the first, never announced, to lapse."""
    attempt = await shop.checkout()
    state = await shop.gateway.expire_session(attempt.checkout_session_id, account=None)
    assert state.status == "expired"
    [expired] = [e for e in await shop.stripe_events(attempt.checkout_session_id) if e["type"].endswith("expired")]
    session = {**expired["data"]["object"], "id": f"cs_unrecorded_{uuid.uuid4().hex}"}
    await shop.deliver({**expired, "id": f"evt_{uuid.uuid4().hex}", "data": {"object": session}})
    assert shop.attempt(attempt.order_id).status == "open"  # the recorded one is untouched


async def test_a_new_checkout_expires_the_open_session_of_the_last_one(shop: PaymentShop) -> None:
    order_id = uuid.uuid4()
    first = await shop.checkout(order_id, version=3)
    second = await shop.checkout(order_id, version=5)
    assert second.attempt == 5 and second.checkout_session_id != first.checkout_session_id
    assert shop.attempt(order_id, 3).status == "expired"
    expired = await shop.gateway.retrieve_session(first.checkout_session_id, account=None)
    assert expired.status == "expired"
    # The replaced attempt's expiry must not send the order's live checkout back to draft.
    assert shop.facts(order_id) == ["link_created", "link_created"]
    stale = await shop.checkout(order_id, version=4)  # a request older than the latest makes no link
    assert (stale.attempt, stale.checkout_session_id) == (5, second.checkout_session_id)


class WebhookWinsTheRace:
    """The real gateway, except that Stripe's expired webhook is reconciled before `expire` even returns."""

    def __init__(self, shop: PaymentShop) -> None:
        self.shop = shop

    def __getattr__(self, name: str) -> Any:
        return getattr(self.shop.gateway, name)

    async def expire_session(self, session_id: str, *, account: str | None) -> SessionState:
        state = await self.shop.gateway.expire_session(session_id, account=account)
        for body in await self.shop.stripe_events(session_id):
            await self.shop.deliver(body)
        return state


async def test_the_replaced_sessions_expiry_stays_quiet_even_when_its_webhook_comes_first(shop: PaymentShop) -> None:
    order_id = uuid.uuid4()
    await shop.checkout(order_id, version=3)
    racing = PaymentShop(shop.engine, shop.sandbox, WebhookWinsTheRace(shop), shop.reconciler, shop.tenant_id)  # type: ignore[arg-type]
    await racing.checkout(order_id, version=5)
    assert shop.attempt(order_id, 3).status == "expired"
    assert shop.facts(order_id) == ["link_created", "link_created"]


async def test_no_new_link_once_an_earlier_session_was_paid(shop: PaymentShop) -> None:
    order_id = uuid.uuid4()
    first = await shop.checkout(order_id, version=3)
    shop.sandbox.hook(first.checkout_session_id)
    latest = await shop.checkout(order_id, version=5)
    assert latest.attempt == 3 and latest.status == "paid"
    assert shop.facts(order_id) == ["link_created", "paid"]


async def test_checkout_uses_the_tenants_return_urls_and_connect_account(
    sandbox: Sandbox, migrated_engine: Engine
) -> None:
    settings = {"success_url": "https://shop.example/thanks", "cancel_url": "https://shop.example/cart"}
    tenant_id = add_tenant(migrated_engine, payments={**settings, "stripe_account": "acct_shop42"})
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        shop = PaymentShop(
            migrated_engine, sandbox, gateway, Reconciler(stripe=gateway, engine=migrated_engine), tenant_id
        )
        attempt = await shop.checkout()
        assert attempt.stripe_account == "acct_shop42"
        headers = {"Authorization": f"Bearer {KEY}"}
        url = f"{sandbox.api}/v1/checkout/sessions/{attempt.checkout_session_id}"
        assert (await http.get(url, headers=headers)).status_code == 404  # not on the platform account
        stored = (await http.get(url, headers={**headers, "Stripe-Account": "acct_shop42"})).json()
        assert (stored["success_url"], stored["cancel_url"]) == (settings["success_url"], settings["cancel_url"])
        sandbox.hook(attempt.checkout_session_id)
        listed = await gateway.list_events(
            since=shop.started, types=["checkout.session.completed"], account="acct_shop42"
        )
        [completed] = [e for e in listed if e["data"]["object"]["id"] == attempt.checkout_session_id]  # type: ignore[index]
        assert completed["account"] == "acct_shop42"
        await shop.deliver(dict(completed))
        assert shop.attempt(attempt.order_id).status == "paid"


def test_a_checkout_plan_is_kept_once_and_renewed_in_place(migrated_engine: Engine) -> None:
    # Requested in another zone: the plan reads back as the same instant on SQLite too, which keeps a timestamp's
    # wall time and drops its offset.
    requested_at = datetime.now(timezone(timedelta(hours=2))).replace(microsecond=0)
    tenant_id, order_id = uuid.uuid4(), uuid.uuid4()

    def keep(now: datetime) -> CheckoutPlan:
        with session_scope(migrated_engine) as session:
            return PaymentStore(session).keep_checkout_plan(tenant_id, order_id, 3, requested_at=requested_at, now=now)

    first = keep(requested_at)
    assert keep(requested_at + timedelta(minutes=22)) == first  # a plan made then would differ
    renewed = keep(requested_at + timedelta(hours=3))
    assert renewed.generation == 1 and renewed.expires_at > first.expires_at
    assert keep(requested_at + timedelta(hours=3, minutes=2)) == renewed


def test_a_checkout_plan_keeps_its_return_urls_and_one_kept_without_them_takes_todays(
    migrated_engine: Engine,
) -> None:
    requested_at = datetime.now(UTC).replace(microsecond=0)
    tenant_id, order_id = uuid.uuid4(), uuid.uuid4()
    first_urls = ReturnUrls(success_url="https://shop.example/thanks")
    moved = ReturnUrls(success_url="https://shop.example/merci", cancel_url="https://shop.example/cart")

    def keep(attempt: int, urls: ReturnUrls) -> CheckoutPlan:
        with session_scope(migrated_engine) as session:
            return PaymentStore(session).keep_checkout_plan(
                tenant_id, order_id, attempt, requested_at=requested_at, now=requested_at, urls=urls
            )

    assert keep(3, first_urls).urls == first_urls
    assert keep(3, moved).urls == first_urls  # "" kept for the cancel URL reads back as not sent
    with session_scope(migrated_engine) as session:  # a plan kept before the URLs were
        session.add(CheckoutPlanRow(tenant_id=tenant_id, order_id=order_id, attempt=4, expires_at=requested_at))
    assert keep(4, moved).urls == moved
    assert keep(4, first_urls).urls == moved


async def test_a_retry_after_the_owner_changed_the_return_urls_gets_the_first_tries_session(
    sandbox: Sandbox, migrated_engine: Engine
) -> None:
    """Stripe made the session but its answer was lost; the owner then changed the return URLs. The retry asks
    with the URLs its first try sent, so Stripe replays that session instead of answering idempotency_error."""
    first_urls = {"success_url": "https://shop.example/thanks", "cancel_url": "https://shop.example/cart"}
    tenant_id = add_tenant(migrated_engine, payments=first_urls)
    async with after_a_lost_answer(migrated_engine, sandbox, tenant_id) as first:
        with session_scope(migrated_engine) as session:
            tenant = session.get(Tenant, tenant_id)
            assert tenant is not None
            tenant.training = json.dumps({"payments": {"success_url": "https://shop.example/merci"}})
        attempt = await first.shop.checkout(first.order_id)
        [made] = first.made
        assert attempt.checkout_session_id == made.id
        assert first.shop.facts(first.order_id) == ["link_created"]
        url = f"{sandbox.api}/v1/checkout/sessions/{made.id}"
        stored = (await first.http.get(url, headers={"Authorization": f"Bearer {KEY}"})).json()
        assert (stored["success_url"], stored["cancel_url"]) == (first_urls["success_url"], first_urls["cancel_url"])


async def paid_order(shop: PaymentShop) -> PaymentAttemptRow:
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    await shop.deliver(completed)
    return shop.attempt(attempt.order_id)


def order_changed(shop: PaymentShop, order_id: uuid.UUID, change: str, actor: ActorKind) -> OrderChanged:
    """What orders publishes once the change is applied: the order's snapshot in its new state."""
    requested = checkout_requested(shop.tenant_id, order_id)
    state = OrderState.REFUNDED if change == "refunded" else OrderState.CANCELLED
    return requested.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "change": change,
            "actor": Actor(kind=actor, id="owner-1" if actor is ActorKind.OWNER else "payments"),
            "order": requested.order.model_copy(update={"state": state}),
        }
    )


@pytest.mark.parametrize("change", ["refunded", "cancelled"])
async def test_an_owners_refund_or_cancel_of_a_paid_order_gives_the_money_back_once(
    shop: PaymentShop, change: str
) -> None:
    paid = await paid_order(shop)
    event = order_changed(shop, paid.order_id, change, ActorKind.OWNER)
    for _ in range(2):  # a redelivery refunds nothing twice
        await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)
    assert shop.attempt(paid.order_id).status == "refunded"
    assert shop.facts(paid.order_id) == ["link_created", "paid", "refunded"]
    # Refunded at Stripe once, in full; Stripe's own report of it comes after and finds it settled.
    [refunded] = await refunds_of(shop, paid)
    assert refunded["data"]["object"]["amount_refunded"] == 2500
    await shop.deliver(refunded)
    assert shop.facts(paid.order_id) == ["link_created", "paid", "refunded"]


async def test_payments_own_report_of_a_refund_asks_stripe_for_nothing(shop: PaymentShop) -> None:
    """`refunded` by the system is a refund Stripe already made; refunding again would fail or double it."""
    paid = await paid_order(shop)
    event = order_changed(shop, paid.order_id, "refunded", ActorKind.SYSTEM)
    await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)
    assert shop.attempt(paid.order_id).status == "paid"
    assert await refunds_of(shop, paid) == []


async def refunds_of(shop: PaymentShop, attempt: PaymentAttemptRow) -> list[dict[str, Any]]:
    return [e for e in await shop.stripe_events(attempt.checkout_session_id) if e["type"] == "charge.refunded"]


async def test_an_owners_cancel_refunds_a_payment_whose_webhook_has_not_been_reconciled(shop: PaymentShop) -> None:
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)  # paid at Stripe; checkout.session.completed not handled yet
    event = order_changed(shop, attempt.order_id, "cancelled", ActorKind.OWNER)
    await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)
    assert shop.attempt(attempt.order_id).status == "refunded"
    await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)  # redelivered
    [refunded] = await refunds_of(shop, attempt)
    assert refunded["data"]["object"]["amount_refunded"] == 2500
    # The money went straight back: orders, whose order is cancelled, hears of the refund, not of a payment it
    # would only ask a person to refund.
    assert shop.facts(attempt.order_id) == ["link_created", "refunded"]
    assert shop.story(attempt.order_id) == [("", "open"), ("open", "paid"), ("paid", "refunded")]
    for body in await shop.stripe_events(attempt.checkout_session_id):  # Stripe's own events, late
        await shop.deliver(body)
    assert shop.facts(attempt.order_id) == ["link_created", "refunded"]
    assert len(await refunds_of(shop, attempt)) == 1


async def disputed_order(shop: PaymentShop) -> PaymentAttemptRow:
    paid = await paid_order(shop)
    shop.sandbox.hook(paid.checkout_session_id, "dispute")
    for body in await shop.stripe_events(paid.checkout_session_id):
        await shop.deliver(body)
    return shop.attempt(paid.order_id)


async def test_a_refund_stripe_refuses_for_a_disputed_payment_asks_a_person_once(shop: PaymentShop) -> None:
    disputed = await disputed_order(shop)
    assert disputed.status == "disputed"
    place_order(shop.engine, shop.tenant_id, disputed.order_id, state=OrderState.REFUNDED, version=5)
    event = order_changed(shop, disputed.order_id, "refunded", ActorKind.OWNER)
    for _ in range(2):
        await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)
    assert await refunds_of(shop, disputed) == []  # Stripe refuses to refund a charge under dispute
    assert shop.attempt(disputed.order_id).status == "disputed"
    asked = shop.handoffs(f"conv-{disputed.order_id}")
    assert len({request["event_id"] for request in asked}) == 1  # a redelivery queues the same request again
    assert (asked[0]["reason"], asked[0]["actor"]["kind"]) == ("payment_mismatch", "system")
    assert "refused to refund" in asked[0]["note"]


async def test_a_refused_refund_with_nobody_to_ask_is_a_dead_letter(shop: PaymentShop) -> None:
    disputed = await disputed_order(shop)
    place_order(shop.engine, shop.tenant_id, disputed.order_id, state=OrderState.REFUNDED, version=5, reachable=False)
    event = order_changed(shop, disputed.order_id, "refunded", ActorKind.OWNER)
    with pytest.raises(PermanentError, match="refund refused"):
        await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)
    assert shop.handoffs(f"conv-{disputed.order_id}") == []


async def test_an_owners_cancel_gives_back_money_collected_at_the_wrong_amount(shop: PaymentShop) -> None:
    attempt = await shop.checkout()
    set_recorded_total(shop.engine, attempt, amount=2400)
    shop.sandbox.hook(attempt.checkout_session_id)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    await shop.deliver(completed)
    assert shop.attempt(attempt.order_id).status == "mismatch"
    event = order_changed(shop, attempt.order_id, "cancelled", ActorKind.OWNER)
    await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)
    assert shop.attempt(attempt.order_id).status == "refunded"
    assert len(await refunds_of(shop, attempt)) == 1
    assert shop.facts(attempt.order_id) == ["link_created", "mismatch", "refunded"]


class RefundedAfterTheDispute:
    """The real gateway, except that Stripe's charge reads as refunded: a refund that closed an inquiry, or came
    once the dispute was over (the sandbox refuses every refund of a disputed charge)."""

    def __init__(self, gateway: StripeCheckoutGateway) -> None:
        self.gateway = gateway

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    async def retrieve_charge(self, charge_id: str, *, account: str | None) -> ChargeState:
        charge = await self.gateway.retrieve_charge(charge_id, account=account)
        return dataclasses.replace(charge, refunded=True, amount_refunded=charge.amount)


async def test_a_refund_after_a_dispute_marks_the_attempt_refunded(shop: PaymentShop) -> None:
    disputed = await disputed_order(shop)
    [opened] = [e for e in await shop.stripe_events(disputed.checkout_session_id) if "dispute" in e["type"]]
    dispute = opened["data"]["object"]
    charge = {"id": dispute["charge"], "object": "charge", "payment_intent": dispute["payment_intent"]}
    refunded = {**opened, "id": f"evt_{uuid.uuid4().hex}", "type": "charge.refunded", "data": {"object": charge}}
    gateway = RefundedAfterTheDispute(shop.gateway)
    reconciler = Reconciler(stripe=gateway, engine=shop.engine, handoff_for=escalate)  # type: ignore[arg-type]
    later = PaymentShop(shop.engine, shop.sandbox, shop.gateway, reconciler, shop.tenant_id)
    for _ in range(2):
        await later.deliver(refunded)
    assert shop.attempt(disputed.order_id).status == "refunded"
    assert shop.facts(disputed.order_id) == ["link_created", "paid", "disputed", "refunded"]
    await later.deliver(opened)  # the dispute's event again: the refund stands
    assert shop.attempt(disputed.order_id).status == "refunded"


class NeverAsked:
    """The real gateway, except that asking for a new session fails the test."""

    def __init__(self, gateway: StripeCheckoutGateway) -> None:
        self.gateway = gateway

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    async def create_session(self, request: CheckoutRequest) -> CheckoutSession:
        raise AssertionError(f"a session was asked for order {request.order_id} at version {request.attempt}")


@pytest.mark.parametrize(
    ("state", "version"),
    [
        (OrderState.CANCELLED, 4),
        (OrderState.DRAFT, 4),
        (OrderState.PAID, 4),
        (OrderState.AWAITING_PAYMENT, 5),
    ],
    ids=["cancelled", "back-in-draft", "paid", "checked-out-again"],
)
async def test_a_redriven_checkout_request_makes_no_link_once_the_order_moved_on(
    shop: PaymentShop, state: OrderState, version: int
) -> None:
    order_id = uuid.uuid4()
    place_order(shop.engine, shop.tenant_id, order_id, state=state, version=version)
    event = checkout_requested(shop.tenant_id, order_id, version=3)
    gateway = NeverAsked(shop.gateway)
    handled = await on_order_event(event, gateway=gateway, engine=shop.engine, reconciler=shop.reconciler)  # type: ignore[arg-type]
    assert handled is None
    assert shop.facts(order_id) == []
    with Session(shop.engine) as session:
        assert session.exec(select(PaymentAttemptRow).where(PaymentAttemptRow.order_id == order_id)).first() is None


async def test_a_checkout_whose_order_got_customer_details_since_still_gets_its_link(shop: PaymentShop) -> None:
    order_id = uuid.uuid4()
    place_order(shop.engine, shop.tenant_id, order_id, state=OrderState.AWAITING_PAYMENT, version=3)
    with session_scope(shop.engine) as session:  # details set after the checkout: version 4, the same checkout
        session.exec(update(OrderRow).where(col(OrderRow.order_id) == order_id).values(version=4))
    event = checkout_requested(shop.tenant_id, order_id, version=3)
    await on_order_event(event, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)
    assert shop.facts(order_id) == ["link_created"]


async def test_a_checkout_no_session_can_take_sends_the_order_back_and_asks_a_person(shop: PaymentShop) -> None:
    order_id = uuid.uuid4()
    place_order(shop.engine, shop.tenant_id, order_id, state=OrderState.AWAITING_PAYMENT, version=3)
    requested = checkout_requested(shop.tenant_id, order_id, quantity=1)
    line = requested.order.lines[0]
    lines = tuple(line.model_copy(update={"sku": f"SKU-{n}"}) for n in range(101))  # Stripe takes 100
    total = line.unit_price.model_copy(update={"amount_minor": line.unit_price.amount_minor * 101})
    event = requested.model_copy(update={"order": requested.order.model_copy(update={"lines": lines, "total": total})})
    gateway = NeverAsked(shop.gateway)
    for _ in range(2):  # redelivered: the same fact and request again, under the same ids; no dead letter
        await on_order_event(event, gateway=gateway, engine=shop.engine, reconciler=shop.reconciler)  # type: ignore[arg-type]
    assert shop.facts(order_id) == ["checkout_refused", "checkout_refused"]
    asked = shop.handoffs(f"conv-{order_id}")
    assert len({request["event_id"] for request in asked}) == 1
    assert (asked[0]["reason"], asked[0]["actor"]["kind"]) == ("rejected_command", "system")
    assert "back in draft" in asked[0]["note"]


def take_back(shop: PaymentShop, order_id: uuid.UUID, actor: ActorKind, change: str = "cancelled") -> None:
    """What orders commits when `actor` cancels (or refunds) the order: its state and the accepted audit row."""
    state = OrderState.CANCELLED if change == "cancelled" else OrderState.REFUNDED
    place_order(shop.engine, shop.tenant_id, order_id, state=state, version=4)
    with session_scope(shop.engine) as session:
        session.add(
            AuditRow(
                tenant_id=shop.tenant_id,
                order_id=order_id,
                message_id=uuid.uuid4(),
                correlation_id=uuid.uuid4(),
                actor_kind=actor.value,
                actor_id=f"{actor.value}-1",
                action="cancel" if change == "cancelled" else "refund",
                outcome="accepted",
                change=change,
                from_state=OrderState.AWAITING_PAYMENT.value,
                to_state=state.value,
                version=4,
                at=datetime.now(UTC),
            )
        )


@pytest.mark.parametrize("webhook_first", [True, False], ids=["webhook-first", "cancel-first"])
async def test_a_payment_racing_a_persons_cancel_is_refunded_once_and_never_announced(
    shop: PaymentShop, webhook_first: bool
) -> None:
    """The customer pays as the owner cancels. Whichever payments handles first, Stripe's completed checkout or the
    order's `cancelled`, the money goes back once, orders never hears `paid` (it would ask a person to refund, and
    the agent would thank the customer), and nobody is asked for anything."""
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    take_back(shop, attempt.order_id, ActorKind.OWNER)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    cancelled = order_changed(shop, attempt.order_id, "cancelled", ActorKind.OWNER)

    async def on_cancel() -> None:
        await on_order_event(cancelled, gateway=shop.gateway, engine=shop.engine, reconciler=shop.reconciler)

    first, second = (shop.deliver(completed), on_cancel()) if webhook_first else (on_cancel(), shop.deliver(completed))
    await first
    assert shop.attempt(attempt.order_id).status == "refunded"
    await second
    for body in await shop.stripe_events(attempt.checkout_session_id):  # every event again, late
        await shop.deliver(body)
    [refunded] = await refunds_of(shop, attempt)
    assert refunded["data"]["object"]["amount_refunded"] == 2500
    assert shop.facts(attempt.order_id) == ["link_created", "refunded"]
    assert shop.story(attempt.order_id) == [("", "open"), ("open", "paid"), ("paid", "refunded")]
    assert shop.handoffs(f"conv-{attempt.order_id}") == []


async def test_a_payment_for_an_order_the_ai_cancelled_is_still_announced(shop: PaymentShop) -> None:
    """Only a person's cancel or refund says the money goes back; orders asks a person about any other."""
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    take_back(shop, attempt.order_id, ActorKind.AI)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    await shop.deliver(completed)
    assert shop.facts(attempt.order_id) == ["link_created", "paid"]
    assert await refunds_of(shop, attempt) == []


def test_only_a_persons_accepted_cancel_or_refund_takes_an_orders_money_back(migrated_engine: Engine) -> None:
    shop = PaymentShop(migrated_engine, None, None, None, add_tenant(migrated_engine))  # type: ignore[arg-type]
    orders = {kind: uuid.uuid4() for kind in ("owner", "staff-refund", "ai", "none")}
    take_back(shop, orders["owner"], ActorKind.OWNER)
    take_back(shop, orders["staff-refund"], ActorKind.STAFF, "refunded")
    take_back(shop, orders["ai"], ActorKind.AI)
    place_order(migrated_engine, shop.tenant_id, orders["none"], state=OrderState.AWAITING_PAYMENT, version=3)
    taken = {kind: taken_back_by_person(migrated_engine, shop.tenant_id, order) for kind, order in orders.items()}
    assert taken == {"owner": True, "staff-refund": True, "ai": False, "none": False}
    assert not taken_back_by_person(migrated_engine, uuid.uuid4(), orders["owner"])  # another tenant's order


class RefundFailsOnce:
    """Stripe answers the first refund with a 503; everything else goes through."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self.refunds = 0

    async def refund(self, payment_intent: str, *, account: str | None, idempotency_key: str) -> str | None:
        self.refunds += 1
        if self.refunds == 1:
            raise CheckoutUnavailable("stripe answered 503")
        result: str | None = await self.gateway.refund(payment_intent, account=account, idempotency_key=idempotency_key)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


async def test_a_quiet_give_back_that_failed_is_made_by_the_next_delivery(shop: PaymentShop) -> None:
    """The owner's cancel was handled before the money came (a bank debit settling late): the reconciler records
    the payment quietly and its refund fails. The redelivery finds the attempt settled; it must still give back."""
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    take_back(shop, attempt.order_id, ActorKind.OWNER)
    [completed] = await shop.stripe_events(attempt.checkout_session_id)
    flaky = RefundFailsOnce(shop.gateway)
    stalled = dataclasses.replace(shop, reconciler=Reconciler(stripe=flaky, engine=shop.engine))
    with pytest.raises(CheckoutUnavailable):
        await stalled.deliver(completed)
    assert shop.attempt(attempt.order_id).status == "paid"
    await stalled.deliver(completed)  # the subscriber's retry
    await stalled.deliver(completed)  # and a late duplicate: still one refund
    assert shop.attempt(attempt.order_id).status == "refunded"
    assert len(await refunds_of(shop, attempt)) == 1
    assert shop.facts(attempt.order_id) == ["link_created", "refunded"]


class RefundFailsUnderItsKey:
    """Stripe after a refund answered 5xx: that answer is kept against the key and replayed for a day."""

    def __init__(self, gateway: StripeCheckoutGateway) -> None:
        self.gateway = gateway
        self.keys: list[str] = []

    async def refund(self, payment_intent: str, *, account: str | None, idempotency_key: str) -> str | None:
        self.keys.append(idempotency_key)
        if len(self.keys) == 1 or idempotency_key == self.keys[0]:
            raise ServerErrorKept("APIError (500): an error occurred with our connection to Stripe")
        return await self.gateway.refund(payment_intent, account=account, idempotency_key=idempotency_key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


async def test_a_refund_stripe_answered_5xx_is_made_at_once_under_another_key_and_only_once(
    shop: PaymentShop,
) -> None:
    paid = await paid_order(shop)
    stripe = RefundFailsUnderItsKey(shop.gateway)
    event = order_changed(shop, paid.order_id, "cancelled", ActorKind.OWNER)
    for _ in range(2):  # a redelivery meets the kept 5xx again, and Stripe's "already refunded" after it
        await on_order_event(event, gateway=stripe, engine=shop.engine, reconciler=shop.reconciler)  # type: ignore[arg-type]
    assert shop.attempt(paid.order_id).status == "refunded"
    [refunded] = await refunds_of(shop, paid)
    assert refunded["data"]["object"]["amount_refunded"] == 2500
    assert stripe.keys[0] == f"refund:{paid.checkout_session_id}" and stripe.keys[1] != stripe.keys[0]
