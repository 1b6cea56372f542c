"""The sweep against the sandbox's event list and a migrated database: what webhooks missed is reconciled, once,
even with two sweeps running at the same time."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, delete
from sqlmodel import Session

from services.payments.reconciler import Reconciler
from services.payments.store import PaymentStore
from services.payments.stripe_gateway import CheckoutUnavailable, StripeCheckoutGateway
from services.payments.sweep import Sweep, SweepReport
from services.payments.tables import SweepCheckpointRow
from tests.integration.conftest import KEY, Sandbox
from tests.integration.payment_shop import PaymentShop, add_tenant

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def shop(sandbox: Sandbox, migrated_engine: Engine) -> AsyncIterator[PaymentShop]:
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        reconciler = Reconciler(stripe=gateway, engine=migrated_engine)
        yield PaymentShop(migrated_engine, sandbox, gateway, reconciler, add_tenant(migrated_engine))


def sweep_of(shop: PaymentShop, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Sweep:
    return Sweep(
        reconciler=shop.reconciler,
        stripe=shop.gateway,
        engine=shop.engine,
        interval_seconds=0.05,
        overlap_seconds=300,
        lookback_seconds=3600,
        clock=clock,
        stale_batch=10_000,
    )


def checkpoint(engine: Engine) -> SweepCheckpointRow | None:
    with Session(engine) as session:
        return session.get(SweepCheckpointRow, "platform")


async def test_the_sweep_reconciles_payments_whose_webhooks_never_came(shop: PaymentShop) -> None:
    paid, refunded, untouched = await shop.checkout(), await shop.checkout(), await shop.checkout()
    shop.sandbox.hook(paid.checkout_session_id)
    shop.sandbox.hook(refunded.checkout_session_id)
    shop.sandbox.hook(refunded.checkout_session_id, "refund")
    report = await sweep_of(shop).run_once()
    assert report.events >= 3 and report.checkpoints_moved >= 1
    assert shop.facts(paid.order_id) == ["link_created", "paid"]
    assert shop.facts(refunded.order_id) == ["link_created", "paid", "refunded"]
    assert shop.facts(untouched.order_id) == ["link_created"]
    moved = checkpoint(shop.engine)
    assert moved is not None and moved.version >= 1
    await sweep_of(shop).run_once()  # the overlap lists them again: nothing changes twice
    assert shop.facts(refunded.order_id) == ["link_created", "paid", "refunded"]


async def test_two_sweeps_at_once_record_each_payment_once(shop: PaymentShop) -> None:
    attempts = [await shop.checkout() for _ in range(4)]
    for attempt in attempts:
        shop.sandbox.hook(attempt.checkout_session_id)
    before = checkpoint(shop.engine)
    reports = await asyncio.gather(sweep_of(shop).run_once(), sweep_of(shop).run_once())
    for attempt in attempts:
        assert shop.facts(attempt.order_id) == ["link_created", "paid"]
        assert shop.story(attempt.order_id) == [("", "open"), ("open", "paid")]
    after = checkpoint(shop.engine)
    assert after is not None
    assert sum(r.checkpoints_moved for r in reports) >= 1
    assert after.version - (before.version if before else 0) <= 2


async def test_an_open_attempt_past_its_expiry_is_read_back_expired(shop: PaymentShop) -> None:
    order_id = uuid.uuid4()
    attempt = await shop.checkout(order_id)
    later = datetime.now(UTC) + timedelta(hours=2)
    shop.sandbox.clock.offset = 7200
    try:
        report = SweepReport()
        await sweep_of(shop, clock=lambda: later).sweep_stale(report)
    finally:
        shop.sandbox.clock.offset = 0
    assert shop.attempt(order_id).status == "expired"
    assert shop.facts(order_id) == ["link_created", "expired"]
    assert shop.story(attempt.order_id)[-1] == ("open", "expired")
    assert report.stale >= 1 and report.applied >= 1


async def test_the_sweep_runs_in_the_background_until_stopped(shop: PaymentShop) -> None:
    attempt = await shop.checkout()
    shop.sandbox.hook(attempt.checkout_session_id)
    sweep = sweep_of(shop)
    await sweep.start()
    try:
        for _ in range(200):
            if shop.attempt(attempt.order_id).status == "paid":
                break
            await asyncio.sleep(0.05)
    finally:
        await sweep.stop()
    assert shop.attempt(attempt.order_id).status == "paid"


class RefusingAccount:
    """Stripe as the sweep sees it once a business disconnected `refused` from the platform: every call naming
    that Connect account is refused; the rest is the sandbox's."""

    def __init__(self, gateway: StripeCheckoutGateway, refused: str) -> None:
        self.gateway = gateway
        self.refused = refused

    async def list_events(self, *, since: int, types: Sequence[str], account: str | None) -> list[dict[str, Any]]:
        if account == self.refused:
            raise CheckoutUnavailable("the API key may not make this request (403)")
        return await self.gateway.list_events(since=since, types=types, account=account)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


async def test_an_account_stripe_refuses_leaves_every_other_account_and_expiry_swept(
    shop: PaymentShop, sandbox: Sandbox
) -> None:
    gone = PaymentShop(
        shop.engine,
        sandbox,
        shop.gateway,
        shop.reconciler,
        add_tenant(shop.engine, payments={"stripe_account": "acct_disconnected"}),
    )
    await gone.checkout()
    paid, expired = await shop.checkout(), await shop.checkout()
    shop.sandbox.hook(paid.checkout_session_id)
    sweep = sweep_of(shop)
    sweep.stripe = cast(StripeCheckoutGateway, RefusingAccount(shop.gateway, "acct_disconnected"))
    report = await sweep.run_once()
    assert shop.facts(paid.order_id) == ["link_created", "paid"]
    assert report.failed == 1
    later = datetime.now(UTC) + timedelta(hours=2)
    sweep.clock = lambda: later
    shop.sandbox.clock.offset = 7200
    try:
        await sweep.run_once()
    finally:
        shop.sandbox.clock.offset = 0
        # Swept 2 h ahead, the checkpoints stand in the future: later tests on this database would list nothing.
        with Session(shop.engine) as session:
            session.execute(delete(SweepCheckpointRow))
            session.commit()
    assert shop.attempt(expired.order_id).status == "expired"


async def test_attempts_that_stay_open_do_not_keep_newer_ones_from_the_stale_sweep(shop: PaymentShop) -> None:
    # Paid by bank debit and still pending: open past their expiry for days, and older than the one below.
    for _ in range(2):
        pending = await shop.checkout()
        shop.sandbox.hook(pending.checkout_session_id, "pay_delayed")
    lost_expiry = await shop.checkout()
    later = datetime.now(UTC) + timedelta(hours=2)
    sweep = sweep_of(shop, clock=lambda: later)
    sweep.stale_batch = 2
    # The database may hold other tests' attempts too: every page of them is read in turn, the last one ours.
    with Session(shop.engine) as session:
        stale = len(PaymentStore(session).stale_open(now=later, limit=10_000))
    shop.sandbox.clock.offset = 7200
    try:
        for _ in range(stale // sweep.stale_batch + 1):
            await sweep.sweep_stale(SweepReport())
            if shop.attempt(lost_expiry.order_id).status != "open":
                break
    finally:
        shop.sandbox.clock.offset = 0
    assert shop.attempt(lost_expiry.order_id).status == "expired"
