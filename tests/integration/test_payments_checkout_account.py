"""A checkout attempt's retry asks the Connect account its first try asked, on SQLite and PostgreSQL: Stripe scopes
an idempotency key to the account, so a retry sent to another one would make a second payable session there."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from sellmesh.db import session_scope
from services.gateway.store import Tenant
from services.payments.domain import CheckoutPlan, CheckoutRequest, CheckoutSession, ReturnUrls, StripeAccount
from services.payments.reconciler import Reconciler
from services.payments.store import PaymentStore
from services.payments.stripe_gateway import AccountRefused, ServerErrorKept, StripeCheckoutGateway
from services.payments.tables import CheckoutPlanRow
from tests.integration.conftest import KEY, Sandbox
from tests.integration.payment_shop import PaymentShop, add_tenant, after_a_lost_answer

pytestmark = pytest.mark.integration

BEFORE, AFTER = StripeAccount("acct_before"), StripeAccount("acct_after")


def move_account(engine: Engine, tenant_id: uuid.UUID, account: str) -> None:
    with session_scope(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.training = json.dumps({"payments": {"stripe_account": account}})


async def test_a_retry_after_the_tenant_moved_connect_accounts_gets_the_first_tries_session(
    sandbox: Sandbox, migrated_engine: Engine
) -> None:
    """Stripe made the session in the first account but its answer was lost; the tenant then moved to another
    account. The retry asks the first account again, so Stripe replays that session instead of making a second."""
    tenant_id = add_tenant(migrated_engine, payments={"stripe_account": "acct_before"})
    async with after_a_lost_answer(migrated_engine, sandbox, tenant_id) as first:
        shop, gateway, order_id = first.shop, first.gateway, first.order_id
        move_account(migrated_engine, tenant_id, "acct_after")
        attempt = await shop.checkout(order_id)
        [made] = first.made
        # The attempt names the account the session lives in: expiring and refunding it must ask that one.
        assert (attempt.checkout_session_id, attempt.stripe_account) == (made.id, "acct_before")
        assert shop.facts(order_id) == ["link_created"]
        state = await gateway.retrieve_session(made.id, account=attempt.stripe_account)
        assert state.status == "open"


class Disconnected:
    """The business disconnected `account` from the platform: Stripe answers account_invalid for it."""

    def __init__(self, gateway: StripeCheckoutGateway, account: str) -> None:
        self.gateway, self.account = gateway, account
        self.asked: list[str | None] = []

    async def create_session(self, request: CheckoutRequest) -> CheckoutSession:
        self.asked.append(request.settings.stripe_account)
        if request.settings.stripe_account == self.account:
            raise AccountRefused(f"the Connect account {self.account} refused the platform (403)", account=self.account)
        return await self.gateway.create_session(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


async def test_a_retry_whose_account_was_disconnected_asks_the_tenants_new_account_and_the_customer_gets_a_link(
    sandbox: Sandbox, migrated_engine: Engine
) -> None:
    """The first try's answer was lost; the business then disconnected that account and connected another. The
    kept account refuses the platform, so the retry asks the new one under a new key: its session is the only link
    the customer gets, and no person is asked for a checkout that can be made."""
    tenant_id = add_tenant(migrated_engine, payments={"stripe_account": "acct_before"})
    async with after_a_lost_answer(migrated_engine, sandbox, tenant_id) as first:
        shop, gateway, order_id = first.shop, first.gateway, first.order_id
        move_account(migrated_engine, tenant_id, "acct_after")
        disconnected = Disconnected(gateway, "acct_before")
        shop.gateway = disconnected  # type: ignore[assignment]
        attempt = await shop.checkout(order_id)
        assert disconnected.asked == ["acct_before", "acct_after"]
        assert attempt.stripe_account == "acct_after" and attempt.checkout_session_id != first.made[0].id
        assert shop.facts(order_id) == ["link_created"]
        state = await gateway.retrieve_session(attempt.checkout_session_id, account="acct_after")
        assert state.status == "open"
        # Asked again (a redelivery), the attempt is recorded: nothing new at Stripe.
        assert (await shop.checkout(order_id)).checkout_session_id == attempt.checkout_session_id
        assert disconnected.asked == ["acct_before", "acct_after"]


async def test_an_account_that_refuses_the_platform_and_is_still_the_tenants_refuses_the_checkout(
    sandbox: Sandbox, migrated_engine: Engine
) -> None:
    tenant_id = add_tenant(migrated_engine, payments={"stripe_account": "acct_before"})
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        disconnected = Disconnected(gateway, "acct_before")
        reconciler = Reconciler(stripe=gateway, engine=migrated_engine)
        shop = PaymentShop(migrated_engine, sandbox, disconnected, reconciler, tenant_id)  # type: ignore[arg-type]
        order_id = uuid.uuid4()
        await shop.request_checkout(order_id)
        assert disconnected.asked == ["acct_before"]
        assert shop.facts(order_id) == ["checkout_refused"]


def test_a_checkout_plan_keeps_its_account_and_one_kept_without_it_takes_todays(migrated_engine: Engine) -> None:
    requested_at = datetime.now(UTC).replace(microsecond=0)
    tenant_id, order_id = uuid.uuid4(), uuid.uuid4()

    def keep(attempt: int, account: StripeAccount) -> CheckoutPlan:
        with session_scope(migrated_engine) as session:
            return PaymentStore(session).keep_checkout_plan(
                tenant_id, order_id, attempt, requested_at=requested_at, now=requested_at, account=account
            )

    assert keep(3, BEFORE).account == BEFORE
    assert keep(3, AFTER).account == BEFORE
    # The platform's own account is kept too, not read back as "none recorded".
    assert keep(5, StripeAccount()).account == StripeAccount()
    assert keep(5, AFTER).account == StripeAccount()
    with session_scope(migrated_engine) as session:  # a plan kept before the account was, still fresh
        expires_at = requested_at + timedelta(hours=1)
        legacy = CheckoutPlanRow(tenant_id=tenant_id, order_id=order_id, attempt=4, expires_at=expires_at)
        legacy.success_url, legacy.cancel_url = "", ""
        session.add(legacy)
    assert keep(4, AFTER) == CheckoutPlan(expires_at, urls=ReturnUrls(), account=AFTER)
    assert keep(4, BEFORE).account == AFTER


class KeepsFailures:
    """Stripe after a 5xx: it keeps that answer against the idempotency key and replays it to every request
    under the key for a day. The first request fails so; any other key reaches the sandbox."""

    def __init__(self, gateway: StripeCheckoutGateway) -> None:
        self.gateway = gateway
        self.failed: set[str] = set()
        self.keys: list[str] = []

    async def create_session(self, request: CheckoutRequest) -> CheckoutSession:
        self.keys.append(request.idempotency_key)
        if not self.failed or request.idempotency_key in self.failed:
            self.failed.add(request.idempotency_key)
            raise ServerErrorKept("APIError (500): an error occurred with our connection to Stripe")
        return await self.gateway.create_session(request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


async def test_a_retry_after_stripe_answered_5xx_asks_under_the_next_key_and_gets_the_one_link(
    sandbox: Sandbox, migrated_engine: Engine
) -> None:
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        stripe = KeepsFailures(gateway)
        reconciler = Reconciler(stripe=gateway, engine=migrated_engine)
        tenant_id = add_tenant(migrated_engine)
        shop = PaymentShop(migrated_engine, sandbox, stripe, reconciler, tenant_id)  # type: ignore[arg-type]
        order_id = uuid.uuid4()
        with pytest.raises(ServerErrorKept):
            await shop.checkout(order_id)
        for _ in range(2):  # the subscriber's retries, and a redelivery after the link was made
            attempt = await shop.checkout(order_id)
        first, second = stripe.keys[:2]
        assert first != second and len(set(stripe.keys)) == 2  # one new key, kept for every later try
        assert shop.facts(order_id) == ["link_created"]
        assert attempt.status == "open"
