"""Thirty orders, their Stripe events duplicated, shuffled, delivered in parallel or never, then two sweeps at once:
every payment is recorded exactly once, nothing unpaid is paid, every refund and dispute is there, and the audit
tells each story."""

import asyncio
import random
import uuid
from collections.abc import Sequence
from itertools import pairwise

import httpx
import pytest
from sqlalchemy import Engine

from services.payments.reconciler import Reconciler
from services.payments.stripe_gateway import StripeCheckoutGateway
from services.payments.sweep import Sweep
from tests.integration.conftest import KEY, Sandbox
from tests.integration.payment_shop import PaymentShop, add_tenant

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# scenario: (what the customer and the bank do, the attempt's final status, the payments events in order)
SCENARIOS: dict[str, tuple[Sequence[str], str, list[str]]] = {
    "paid": (["pay"], "paid", ["paid"]),
    "refunded": (["pay", "refund"], "refunded", ["paid", "refunded"]),
    "disputed": (["pay", "dispute"], "disputed", ["paid", "disputed"]),
    "expired": (["expire"], "expired", ["expired"]),
    "abandoned": ([], "open", []),
    "delayed_paid": (["pay_delayed", "delayed_succeeded"], "paid", ["paid"]),
    "delayed_failed": (["pay_delayed", "delayed_failed"], "failed", ["failed"]),
}
MIX = ["paid"] * 9 + ["refunded"] * 5 + ["disputed"] * 2 + ["expired"] * 4 + ["abandoned"] * 4
MIX += ["delayed_paid"] * 3 + ["delayed_failed"] * 3


async def act(shop: PaymentShop, session_id: str, actions: Sequence[str]) -> None:
    for action in actions:
        if action == "expire":
            await shop.gateway.expire_session(session_id, account=None)
        else:
            assert (await asyncio.to_thread(shop.sandbox.hook, session_id, action)).status_code == 200


async def deliver_like_a_broker(shop: PaymentShop, bodies: list[dict[str, object]], *, parallel: int) -> None:
    """Parallel consumers; a delivery that fails is retried, as the subscriber wrapper would."""
    gate = asyncio.Semaphore(parallel)

    async def one(body: dict[str, object]) -> None:
        async with gate:
            for attempt in range(4):
                try:
                    await shop.deliver(body)
                    return
                except Exception:
                    if attempt == 3:
                        raise
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(one(body) for body in bodies))


async def test_lost_duplicated_and_shuffled_events_settle_every_order_exactly_once(
    sandbox: Sandbox, migrated_engine: Engine
) -> None:
    rng = random.Random(20261125)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        reconciler = Reconciler(stripe=gateway, engine=migrated_engine)
        shop = PaymentShop(migrated_engine, sandbox, gateway, reconciler, add_tenant(migrated_engine))
        orders: dict[uuid.UUID, tuple[str, str]] = {}
        for scenario in MIX:
            attempt = await shop.checkout()
            orders[attempt.order_id] = (scenario, attempt.checkout_session_id)
        for scenario, session_id in orders.values():
            await act(shop, session_id, SCENARIOS[scenario][0])

        events = await shop.stripe_events(*(session_id for _, session_id in orders.values()))
        assert len(events) == sum(len(SCENARIOS[scenario][0]) for scenario in MIX)  # one event per action
        deliveries = [body for body in events for _ in range(rng.choice([0, 0, 1, 1, 2, 3]))]
        rng.shuffle(deliveries)
        await deliver_like_a_broker(shop, deliveries, parallel=8)
        unsettled = [o for o, (scenario, _) in orders.items() if shop.attempt(o).status != SCENARIOS[scenario][1]]
        assert unsettled, "some events were never delivered: the sweep has work to do"

        sweeps = [
            Sweep(
                reconciler=reconciler,
                stripe=gateway,
                engine=migrated_engine,
                interval_seconds=1,
                overlap_seconds=300,
                lookback_seconds=3600,
                stale_batch=10_000,
            )
            for _ in range(2)
        ]
        await asyncio.gather(*(sweep.run_once() for sweep in sweeps))

    for order_id, (scenario, _) in orders.items():
        _, status, facts = SCENARIOS[scenario]
        assert shop.attempt(order_id).status == status, scenario
        assert shop.facts(order_id) == ["link_created", *facts], scenario
        climb = ["open", *facts]
        assert shop.story(order_id) == [("", "open"), *pairwise(climb)], scenario
