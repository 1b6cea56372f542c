"""The messages a decision makes orders publish: its outcome event, and the handoff a refused payment needs."""

from datetime import datetime
from typing import Final

from schemas.envelope import Actor, ActorKind, Envelope
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import CatalogChanged, CommandRejected, OrderChanged, OrderCommandBase, UpsertProduct
from schemas.payments import OrderPaymentBase
from sellmesh.service import EnvelopeFields, caused_by
from services.orders.catalog import CatalogAccepted, CatalogDecision
from services.orders.domain import Action
from services.orders.order import Accepted, Decision, Order, Rejected

PRODUCER: Final = "orders"
ORDERS_ACTOR: Final = Actor(kind=ActorKind.SYSTEM, id="orders")

Outcome = OrderChanged | CommandRejected | CatalogChanged
Source = OrderCommandBase | OrderPaymentBase


def _envelope(source: Envelope, tag: str, at: datetime) -> EnvelopeFields:
    # Ids derive from the source, so a re-run after a lost commit yields the same messages.
    return caused_by(source, tag, producer=PRODUCER, at=at)


def outcome_event(source: Source, *, actor: Actor, action: Action, decision: Decision, at: datetime) -> Outcome | None:
    """The event a decision on an order publishes; None when the order events have no name for it."""
    if isinstance(decision, Accepted) and decision.change is not None:
        return OrderChanged(
            **_envelope(source, "outcome", at),
            order_id=source.order_id,
            command_id=source.event_id,
            change=decision.change,
            actor=actor,
            order=decision.order.snapshot(),
        )
    if isinstance(decision, Rejected):
        return CommandRejected(
            **_envelope(source, "outcome", at),
            order_id=source.order_id,
            command_id=source.event_id,
            command_type=action.value,
            actor=actor,
            reason=decision.reason,
            detail=decision.detail[:500],
        )
    return None


def catalog_event(command: UpsertProduct, decision: CatalogDecision, *, at: datetime) -> Outcome:
    """The event a catalog decision publishes: the product as it now stands, or why it was refused."""
    if isinstance(decision, CatalogAccepted):
        return CatalogChanged(
            **_envelope(command, "outcome", at),
            command_id=command.event_id,
            change=decision.change,
            actor=command.actor,
            product=decision.product,
        )
    return CommandRejected(
        **_envelope(command, "outcome", at),
        product_sku=command.sku,
        command_id=command.event_id,
        command_type=command.type,
        actor=command.actor,
        reason=decision.reason,
        detail=decision.detail[:500],
    )


def refund_handoff(event: OrderPaymentBase, order: Order | None, *, at: datetime) -> RequestHandoff | None:
    """Ask for a person about money that reached an order which would not take it.

    Only for this tenant's order with a conversation and a channel address (orders created by the
    agent carry one); otherwise the rejection alone reports it (the owners' API shows it), and a person of the
    business refunds it.
    """
    if order is None or order.tenant_id != event.tenant_id or order.conversation_id is None:
        return None
    address = order.channel_address
    if address is None:
        return None
    return RequestHandoff(
        **_envelope(event, "handoff", at),
        conversation_id=order.conversation_id,
        actor=ORDERS_ACTOR,
        reason=HandoffReason.PAYMENT_MISMATCH,
        channel=address.channel,
        channel_account_id=address.channel_account_id,
        customer_id=address.customer_id,
        note=f"payment received for order {order.order_id}, which is {order.state}: refund required",
    )
