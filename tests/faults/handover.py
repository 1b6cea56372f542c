"""Tells the scripted customers when a person took them over because a send of theirs is in doubt, so they
stop waiting for replies the mesh will not send."""

import asyncio
from collections.abc import Mapping

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from bench.customers import Inbox
from bench.scenario import Customer
from services.gateway.query import find_channel_account
from services.ingest.inbound import conversation_id
from tests.faults.invariants import IN_DOUBT

Conversation = tuple[str, str]  # (tenant id, conversation id)


def customers_by_conversation(engine: Engine, people: list[Customer]) -> dict[Conversation, str]:
    """Each scripted customer's conversation, keyed as the sender's rows name it."""
    found: dict[Conversation, str] = {}
    for customer in people:
        account = find_channel_account(
            engine, channel=customer.channel.value, external_id=customer.shop.accounts[customer.channel]
        )
        if account is None:
            raise LookupError(f"no {customer.channel.value} account seeded for {customer.shop.tenant_id}")
        found[(str(account.tenant_id), conversation_id(account, customer.customer_id))] = customer.customer_id
    return found


def in_doubt_conversations(engine: Engine) -> set[Conversation]:
    """Conversations with a send given up on mid-send; each is handed to a person."""
    query = text("SELECT tenant_id, conversation_id FROM ingest_sends WHERE status = 'failed' AND error LIKE :in_doubt")
    with engine.connect() as conn:
        rows = conn.execute(query, {"in_doubt": f"{IN_DOUBT}%"}).all()
    return {(str(row.tenant_id), row.conversation_id) for row in rows}


def in_doubt_customers(engine: Engine, customers: Mapping[Conversation, str]) -> set[str]:
    return {customers[key] for key in in_doubt_conversations(engine) if key in customers}


async def stand_down_in_doubt(
    engine: Engine, customers: Mapping[Conversation, str], inbox: Inbox, *, every: float = 0.5
) -> None:
    """Until cancelled: every `every` seconds, stand down the customers whose conversation has a send in doubt."""
    while True:
        try:
            found = await asyncio.to_thread(in_doubt_customers, engine, customers)
        except DBAPIError:
            # The faults cut this engine's connections too; the pool reconnects on the next read.
            found = set()
        for customer_id in found - inbox.handed_over:
            inbox.stand_down(customer_id)
        await asyncio.sleep(every)
