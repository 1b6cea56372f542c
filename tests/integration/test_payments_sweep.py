"""The sweep against the sandbox's event list and a migrated database: what webhooks missed is reconciled, once,
even with two sweeps running at the same time."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine
from sqlmodel import Session

from services.payments.reconciler import Reconciler
from services.payments.stripe_gateway import StripeCheckoutGateway
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
