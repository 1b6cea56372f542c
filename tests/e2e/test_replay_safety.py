"""Replaying a day's commands, payment facts and outbound messages changes nothing: idempotency makes replay safe.

The dedup marks in Redis are dropped before the replay, as they would be for traffic older than their TTL,
so what is proven is the services' own idempotency (processed-command tables, send log, unique event ids).
"""

import asyncio
import re
import uuid
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Engine

from schemas.orders import OrderState
from schemas.topics import CHANNEL_OUTBOUND, ORDERS_COMMANDS, PAYMENTS_EVENTS
from sellmesh.mesh import Mesh
from sellmesh.ops.address import BrokerAddress
from sellmesh.ops.connection import Cluster
from sellmesh.ops.groups import lag
from sellmesh.ops.planning import RangeRequest
from sellmesh.ops.replay_cli import replay_topic
from sellmesh.ops.selection import Filters
from sellmesh.service import derived_id
from services.gateway.query import find_channel_account
from services.orders.query import latest_order_for_conversation
from tests.e2e.conftest import Shop, eventually, new_customer
from tests.faults.quiet import unpublished_outbox_rows

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="package")]

SESSION_IN_LINK = re.compile(r"/sandbox/stripe/pay/(cs_test_[0-9a-f]+)")
REPLAYED = (ORDERS_COMMANDS, PAYMENTS_EVENTS, CHANNEL_OUTBOUND)
# Moves on a timer, not because of any message.
UNRELATED_TO_MESSAGES = {"payments_sweep_checkpoints"}


def tenant_rows(engine: Engine, tenant_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every row this tenant has in every table, and the outbox rows that name it: the whole observable state."""
    tenant: sqlalchemy.BindParameter[Any] = sqlalchemy.bindparam(
        "tenant", tenant_id.hex if engine.dialect.name == "sqlite" else tenant_id
    )
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    metadata = sqlalchemy.MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in UNRELATED_TO_MESSAGES:
                continue
            if "tenant_id" in table.c:
                query = sqlalchemy.select(table).where(table.c.tenant_id == tenant)
            elif table.name == "outbox":
                query = sqlalchemy.select(table).where(table.c.payload.contains(str(tenant_id)))
            else:
                continue
            snapshot[table.name] = sorted((tuple(map(str, row)) for row in conn.execute(query)), key=str)
    return snapshot


async def settled(address: BrokerAddress, engine: Engine) -> None:
    """Wait until every consumer group has consumed everything on the replayed topics and orders' events, and
    every relay has marked what it published (marks may wait a moment for more rows)."""
    async with Cluster(address) as cluster:

        async def behind() -> int:
            _, rows = await lag(cluster, None)
            return sum(r.lag for r in rows if r.topic in REPLAYED or r.topic.startswith("orders.events"))

        await eventually(behind, lambda n: n == 0, within=20)

    async def unmarked() -> int:
        return await asyncio.to_thread(unpublished_outbox_rows, engine)

    await eventually(unmarked, lambda n: n == 0, within=20)


async def a_day_of_traffic(shop: Shop) -> tuple[str, str]:
    """A conversation that becomes an order, a checkout link, and a payment (as in test_payments)."""
    customer = new_customer()
    await shop.say(customer, "I want two espresso beans")
    await shop.wait_for_replies(customer, 1)
    await shop.say(customer, "how do I pay?")
    replies = await shop.wait_for_replies(customer, 3)
    match = next(m for r in replies if (m := SESSION_IN_LINK.search(r["text"])))
    paid = await shop.http.post(f"{shop.base_url}/sandbox/stripe/_test/sessions/{match.group(1)}/pay")
    assert paid.status_code == 200
    await shop.wait_for_replies(customer, len(replies) + 1, within=20)
    account = find_channel_account(shop.engine, channel="whatsapp", external_id=shop.phone_number_id)
    assert account is not None
    conversation = str(derived_id("conversation", shop.tenant_id, account.id, customer))

    async def order_state() -> OrderState | None:
        order = latest_order_for_conversation(shop.engine, shop.tenant_id, conversation)
        return None if order is None else order.state

    await eventually(order_state, lambda state: state is OrderState.PAID, within=20)
    return customer, conversation


# One database backend keeps this under the time budget; the same replay passes on PostgreSQL.
@pytest.mark.parametrize("mesh", ["sqlite"], indirect=True)
async def test_replaying_commands_payments_and_outbound_changes_no_order_payment_or_send(
    mesh: Mesh, shop: Shop
) -> None:
    assert mesh.ctx is not None and mesh.settings.kafka_bootstrap_servers is not None
    address = BrokerAddress(mesh.settings.kafka_bootstrap_servers, False, "test")
    customer, _ = await a_day_of_traffic(shop)
    await settled(address, shop.engine)
    before_rows = await asyncio.to_thread(tenant_rows, shop.engine, shop.tenant_id)
    before_sends = await shop.replies(customer)
    assert before_rows["orders_orders"] and before_rows["payments_attempts"] and before_rows["orders_audit"]

    forgotten = [key async for key in mesh.ctx.redis.scan_iter(match="dedup:*")]
    assert forgotten
    await mesh.ctx.redis.delete(*forgotten)
    published = 0
    for topic in REPLAYED:
        published += await replay_topic(
            address,
            topic,
            to=topic,
            request=RangeRequest(),
            filters=Filters(tenant=str(shop.tenant_id)),
            limit=1000,
            reason="replay safety test",
            by="tests",
            rate=500.0,
            yes=True,
        )
    assert published >= 6  # commands, the paid fact, and at least four messages to the customer

    await settled(address, shop.engine)
    assert [key async for key in mesh.ctx.redis.scan_iter(match="dedup:*")]  # the replay was consumed again
    assert await asyncio.to_thread(tenant_rows, shop.engine, shop.tenant_id) == before_rows
    assert await shop.replies(customer) == before_sends
