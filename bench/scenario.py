"""Who takes part in a load run: seeded shops (tenants with WhatsApp, Messenger and Instagram accounts and a
catalog) and their scripted customers, with the webhook bodies Meta and Stripe would send for them."""

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from schemas.envelope import Channel
from sellmesh.db import session_scope
from sellmesh.sandbox.stripe_events import signature_header
from sellmesh.settings import SANDBOX_STRIPE_WEBHOOK_SECRET
from services.gateway.admin import connect_channel_account, create_tenant
from services.gateway.store import Tenant
from services.ingest.payloads import encode, messenger_text, whatsapp_text
from services.ingest.signature import sign
from services.orders.store import upsert_product

# Plan limits far above any load run, so the quota never hands a conversation over mid-benchmark.
UNLIMITED_PLAN = {"plan": {"name": "pro", "monthly_ai_replies": 10**9, "messages_per_minute": 10**9}}


@dataclass(frozen=True)
class Step:
    text: str
    # How many messages the customer gets back for this line (a payment link comes after the reply).
    replies: int


BROWSE = (Step("hello", 1), Step("how much is the mug?", 1), Step("thanks, bye", 1))
BUY = (Step("hello", 1), Step("I want two espresso beans", 1), Step("how do I pay?", 2))
PERSON = (Step("hello", 1), Step("can I talk to a person?", 1))
SCRIPTS = {"browse": BROWSE, "buy": BUY, "person": PERSON}
# After paying, the customer hears "we received your payment" once.
PAID_REPLIES = 1


@dataclass(frozen=True)
class Shop:
    tenant_id: uuid.UUID
    app_secret: str
    accounts: dict[Channel, str]  # channel → the external id Meta sends (phone_number_id, page id, IG id)


@dataclass(frozen=True)
class Customer:
    shop: Shop
    channel: Channel
    customer_id: str
    script: str

    @property
    def steps(self) -> tuple[Step, ...]:
        return SCRIPTS[self.script]

    @property
    def pays(self) -> bool:
        return self.script == "buy"

    @property
    def expected_replies(self) -> int:
        return sum(step.replies for step in self.steps) + (PAID_REPLIES if self.pays else 0)

    def webhook(self, text: str) -> tuple[bytes, str]:
        """A new message from this customer as Meta delivers it: the body and its signature header."""
        account = self.shop.accounts[self.channel]
        if self.channel is Channel.WHATSAPP:
            payload = whatsapp_text(phone_number_id=account, customer=self.customer_id, text=text)
        else:
            payload = messenger_text(
                page_id=account, customer=self.customer_id, text=text, instagram=self.channel is Channel.INSTAGRAM
            )
        body = encode(payload)
        return body, sign(body, self.shop.app_secret)


def seed_shop(engine: Engine, *, name: str) -> Shop:
    """A tenant on an unlimited plan with two products (no stock limit) and one account per channel."""
    tenant_id, _ = create_tenant(engine, name=name)
    with session_scope(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.training = json.dumps(UNLIMITED_PLAN)
        session.add(tenant)
        for sku, product, price in (("ESP-250", "Espresso beans 250g", 1250), ("MUG-01", "Ceramic mug", 900)):
            upsert_product(
                session,
                tenant_id=tenant_id,
                sku=sku,
                name=product,
                description="",
                price_minor=price,
                currency="EUR",
                stock=None,
            )
    secret = secrets.token_hex(16)
    base = str(uuid.uuid4().int)[:14]
    accounts = {Channel.WHATSAPP: f"1{base}", Channel.MESSENGER: f"2{base}", Channel.INSTAGRAM: f"3{base}"}
    for channel, external_id in accounts.items():
        connect_channel_account(
            engine,
            tenant_id=tenant_id,
            channel=channel,
            external_id=external_id,
            app_secret=secret,
            verify_token=secrets.token_urlsafe(8),
            access_token="load-token",
        )
    return Shop(tenant_id, secret, accounts)


def customers(
    shops: list[Shop], count: int, *, mix: tuple[str, ...] = ("browse", "buy", "browse", "person")
) -> list[Customer]:
    """`count` customers spread over the shops, the three channels and the scripts in `mix`."""
    channels = (Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM)
    return [
        Customer(shops[i % len(shops)], channels[i % 3], f"9{uuid.uuid4().int % 10**12:012d}", mix[i % len(mix)])
        for i in range(count)
    ]


def stripe_completed(session: dict[str, Any]) -> tuple[bytes, str]:
    """The `checkout.session.completed` event Stripe sends for a paid session, signed as Stripe signs it."""
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": session},
    }
    payload = json.dumps(event)
    return payload.encode(), signature_header(payload, SANDBOX_STRIPE_WEBHOOK_SECRET, timestamp=int(time.time()))
