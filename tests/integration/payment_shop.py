"""A tenant selling through the payments service against the sandbox: checkouts, Stripe events, what was recorded."""

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.envelope import Actor, ActorKind, Money
from schemas.orders import OrderChanged, OrderLine, OrderSnapshot, OrderState
from schemas.payments import StripeEventReceived
from schemas.topics import HANDOFF_COMMANDS, PAYMENTS_EVENTS
from sellmesh.db import session_scope
from sellmesh.outbox import OutboxRow
from sellmesh.service import derived_id
from services.gateway.store import Tenant
from services.orders.tables import AuditRow, OrderRow
from services.payments.domain import CheckoutRequest, CheckoutSession
from services.payments.handlers import on_order_event, on_stripe_event
from services.payments.reconciler import Reconciler
from services.payments.store import PaymentAttemptRow, PaymentStore
from services.payments.stripe_event import HANDLED_TYPES
from services.payments.stripe_gateway import CheckoutUnavailable, StripeCheckoutGateway
from tests.builders import ADDRESS, envelope
from tests.integration.conftest import KEY, Sandbox


def checkout_requested(
    tenant_id: uuid.UUID, order_id: uuid.UUID, *, version: int = 3, cents: int = 1250, quantity: int = 2
) -> OrderChanged:
    line = OrderLine(sku="MUG-1", name="Mug", quantity=quantity, unit_price=Money(amount_minor=cents, currency="EUR"))
    total = Money(amount_minor=cents * quantity, currency="EUR")
    snapshot = OrderSnapshot(
        order_id=order_id, state=OrderState.AWAITING_PAYMENT, version=version, lines=(line,), total=total
    )
    return OrderChanged(
        **envelope(tenant_id, producer="orders"),
        order_id=order_id,
        change="checkout_requested",
        actor=Actor(kind=ActorKind.AI),
        order=snapshot,
    )


def place_order(
    engine: Engine,
    tenant_id: uuid.UUID,
    order_id: uuid.UUID,
    *,
    state: OrderState,
    version: int,
    reachable: bool = True,
) -> None:
    """The order as orders keeps it, as far as payments reads it: state, version and (`reachable`) the customer's
    conversation `conv-{order_id}` with a channel address. Awaiting payment, it was checked out at `version`."""
    with session_scope(engine) as session:
        at = datetime.now(UTC)
        row = session.get(OrderRow, order_id) or OrderRow(
            order_id=order_id, tenant_id=tenant_id, currency="EUR", total_minor=0, created_at=at, state="", version=0
        )
        row.state, row.version, row.updated_at = state.value, version, at
        row.conversation_id = f"conv-{order_id}" if reachable else None
        row.channel = ADDRESS.channel.value if reachable else None
        row.channel_account_id = ADDRESS.channel_account_id if reachable else None
        row.customer_id = ADDRESS.customer_id if reachable else None
        session.add(row)
        if state is OrderState.AWAITING_PAYMENT:
            session.add(
                AuditRow(
                    tenant_id=tenant_id,
                    order_id=order_id,
                    message_id=uuid.uuid4(),
                    correlation_id=uuid.uuid4(),
                    actor_kind=ActorKind.AI.value,
                    action="request_checkout",
                    outcome="accepted",
                    change="checkout_requested",
                    from_state=OrderState.DRAFT.value,
                    to_state=state.value,
                    version=version,
                    at=at,
                )
            )


def order_version(engine: Engine, order_id: uuid.UUID) -> int | None:
    with Session(engine) as session:
        row = session.get(OrderRow, order_id)
        return None if row is None else row.version


def add_tenant(engine: Engine, *, payments: dict[str, str] | None = None) -> uuid.UUID:
    with session_scope(engine) as session:
        tenant = Tenant(name=f"Shop {uuid.uuid4().hex[:6]}", training=json.dumps({"payments": payments or {}}))
        session.add(tenant)
        session.flush()
        return tenant.id


@dataclass
class PaymentShop:
    engine: Engine
    sandbox: Sandbox
    gateway: StripeCheckoutGateway
    reconciler: Reconciler
    tenant_id: uuid.UUID
    started: int = field(default_factory=lambda: int(time.time()) - 5)

    async def checkout(self, order_id: uuid.UUID | None = None, **kwargs: Any) -> PaymentAttemptRow:
        """Handle a checkout request and return the attempt it recorded."""
        order_id = order_id or uuid.uuid4()
        await self.request_checkout(order_id, **kwargs)
        return self.attempt(order_id)

    async def request_checkout(self, order_id: uuid.UUID, **kwargs: Any) -> None:
        """Handle a checkout request; orders accepted it, unless the order is at a later version already."""
        event = checkout_requested(self.tenant_id, order_id, **kwargs)
        if (order_version(self.engine, event.order_id) or 0) < event.order.version:
            awaiting = OrderState.AWAITING_PAYMENT
            place_order(self.engine, self.tenant_id, event.order_id, state=awaiting, version=event.order.version)
        await on_order_event(event, gateway=self.gateway, engine=self.engine, reconciler=self.reconciler)

    def attempt(self, order_id: uuid.UUID, number: int | None = None) -> PaymentAttemptRow:
        with Session(self.engine) as session:
            query = select(PaymentAttemptRow).where(
                PaymentAttemptRow.tenant_id == self.tenant_id, PaymentAttemptRow.order_id == order_id
            )
            rows = list(session.exec(query.order_by(col(PaymentAttemptRow.attempt))))
        return rows[-1] if number is None else next(r for r in rows if r.attempt == number)

    def facts(self, order_id: uuid.UUID) -> list[str]:
        """The payment events queued for the order, in order: `link_created`, `paid`, ..."""
        with Session(self.engine) as session:
            query = select(OutboxRow).where(OutboxRow.topic == PAYMENTS_EVENTS, OutboxRow.key == str(order_id))
            return [json.loads(row.payload)["type"] for row in session.exec(query.order_by(col(OutboxRow.id)))]

    def handoffs(self, conversation_id: str) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            query = select(OutboxRow).where(OutboxRow.topic == HANDOFF_COMMANDS, OutboxRow.key == conversation_id)
            return [json.loads(row.payload) for row in session.exec(query)]

    def story(self, order_id: uuid.UUID) -> list[tuple[str, str]]:
        with session_scope(self.engine) as session:
            return [(row.before, row.after) for row in PaymentStore(session).audit(self.tenant_id, order_id)]

    async def stripe_events(self, *objects: str) -> list[dict[str, Any]]:
        """Stripe's events (oldest first) about these sessions and their charges, as the sweep would list them."""
        listed = await self.gateway.list_events(since=self.started, types=HANDLED_TYPES, account=None)
        wanted = set(objects)
        found: list[dict[str, Any]] = []
        for body in listed:
            obj: Any = body["data"]["object"]  # type: ignore[index]
            if {obj.get("id"), obj.get("charge"), obj.get("payment_intent")} & wanted:
                wanted.add(obj.get("payment_intent") or "")  # a session's intent leads to its charge's events
                found.append(dict(body))
        return found

    async def deliver(self, body: dict[str, Any], *, tenant_id: uuid.UUID | None = None) -> None:
        """What the reconciler's subscriber does with a verified event routed to `tenant_id` (default: this shop)."""
        event_id = derived_id("stripe-event", body["id"])
        received = StripeEventReceived(
            **envelope(tenant_id or self.tenant_id, event_id=event_id, correlation_id=event_id, producer="payments"),
            stripe_event_id=body["id"],
            stripe_event_type=body["type"],
            body=json.dumps(body),
        )
        await on_stripe_event(received, reconciler=self.reconciler)


class AnswerLost:
    """Stripe makes the session; its answer never comes back (a timeout, a dropped connection)."""

    def __init__(self, gateway: StripeCheckoutGateway) -> None:
        self.gateway = gateway
        self.made: list[CheckoutSession] = []

    async def create_session(self, request: CheckoutRequest) -> CheckoutSession:
        self.made.append(await self.gateway.create_session(request))
        raise CheckoutUnavailable("the answer was lost")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)


@dataclass
class LostFirstTry:
    """A checkout whose first try Stripe made but whose answer never came back (`after_a_lost_answer`)."""

    shop: PaymentShop  # asks Stripe directly from now on
    gateway: StripeCheckoutGateway
    made: list[CheckoutSession]  # the session the lost try made
    order_id: uuid.UUID
    http: httpx.AsyncClient


@asynccontextmanager
async def after_a_lost_answer(engine: Engine, sandbox: Sandbox, tenant_id: uuid.UUID) -> AsyncIterator[LostFirstTry]:
    async with httpx.AsyncClient() as http:
        gateway = StripeCheckoutGateway(api_key=KEY, base_url=sandbox.api, http=http)
        lost = AnswerLost(gateway)
        reconciler = Reconciler(stripe=gateway, engine=engine)
        shop = PaymentShop(engine, sandbox, lost, reconciler, tenant_id)  # type: ignore[arg-type]
        order_id = uuid.uuid4()
        with pytest.raises(CheckoutUnavailable):
            await shop.checkout(order_id)
        shop.gateway = gateway
        yield LostFirstTry(shop, gateway, lost.made, order_id, http)
