"""Order rules: the state machine, who may do what, and what each command or payment fact decides."""

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from typing import Final
from uuid import UUID

from schemas.envelope import ActorKind
from schemas.orders import (
    AddItem,
    CreateDraft,
    OrderState,
    RejectionReason,
    RemoveItem,
    RequestCheckout,
    SetCustomerDetails,
)
from services.orders.order import (
    Accepted,
    Change,
    Command,
    Decision,
    Order,
    ProductInfo,
    Refused,
    Rejected,
    StockEffect,
    Unchanged,
    add_line,
    catalog_product,
    merge_details,
    remove_line,
    reprice_for_checkout,
)

S = OrderState
R = RejectionReason


class Action(StrEnum):
    """Everything that can happen to an order; a command's action is its `type`."""

    CREATE_DRAFT = "create_draft"
    ADD_ITEM = "add_item"
    REMOVE_ITEM = "remove_item"
    SET_CUSTOMER_DETAILS = "set_customer_details"
    REQUEST_CHECKOUT = "request_checkout"
    CANCEL = "cancel"
    FULFIL = "fulfil"
    CLOSE = "close"
    REFUND = "refund"
    MARK_PAID = "mark_paid"
    MARK_REFUNDED = "mark_refunded"
    PAYMENT_EXPIRED = "payment_expired"
    PAYMENT_FAILED = "payment_failed"
    UPSERT_PRODUCT = "upsert_product"  # a catalog action: it names a product, not an order


TERMINAL: Final = frozenset({S.CLOSED, S.CANCELLED, S.REFUNDED})
ANY_STATE: Final = frozenset(OrderState)
BEFORE_PAYMENT: Final = frozenset({S.DRAFT, S.AWAITING_PAYMENT})
REFUND_REQUIRED: Final = "payment received for a closed order: refund required"
HOLDS_STOCK: Final = frozenset({S.AWAITING_PAYMENT, S.PAID})
RETURNS_STOCK: Final = frozenset({S.DRAFT, S.CANCELLED, S.REFUNDED})

# From which state each action leads where. Creating a draft starts from no order at all.
# Cancelling a paid order is here because DESIGN lets owners and staff do it; payments must
# refund the money when it sees an order it was paid for become cancelled.
TRANSITIONS: Final[Mapping[Action, Mapping[OrderState, OrderState]]] = {
    Action.ADD_ITEM: {S.DRAFT: S.DRAFT},
    Action.REMOVE_ITEM: {S.DRAFT: S.DRAFT},
    Action.SET_CUSTOMER_DETAILS: {s: s for s in (S.DRAFT, S.AWAITING_PAYMENT, S.PAID)},
    Action.REQUEST_CHECKOUT: {S.DRAFT: S.AWAITING_PAYMENT},
    Action.CANCEL: {S.DRAFT: S.CANCELLED, S.AWAITING_PAYMENT: S.CANCELLED, S.PAID: S.CANCELLED},
    Action.FULFIL: {S.PAID: S.FULFILLED},
    Action.CLOSE: {S.FULFILLED: S.CLOSED},
    Action.REFUND: {S.PAID: S.REFUNDED, S.FULFILLED: S.REFUNDED},
    Action.MARK_PAID: {S.AWAITING_PAYMENT: S.PAID},
    Action.MARK_REFUNDED: {S.PAID: S.REFUNDED, S.FULFILLED: S.REFUNDED},
    # An expired link sends the order back to draft, not to cancelled: the customer usually
    # still wants the goods, so the cart survives and a new checkout makes a new link. The
    # reservation is released because an abandoned checkout must not hold stock for ever.
    Action.PAYMENT_EXPIRED: {S.AWAITING_PAYMENT: S.DRAFT},
    # A failed payment (a bank debit that bounced) ends its checkout like an expiry: the session is complete, so
    # it never expires, and the order would otherwise hold its stock for ever.
    Action.PAYMENT_FAILED: {S.AWAITING_PAYMENT: S.DRAFT},
}

_AI, _OWNER, _STAFF, _SYSTEM = ActorKind.AI, ActorKind.OWNER, ActorKind.STAFF, ActorKind.SYSTEM

# Who may take each action, and from which states (TRANSITIONS still decides which states lead
# anywhere). An actor missing from a row may never take that action; customers are in no row,
# they act through the AI or the team. Only payments (system) applies payment facts.
PERMISSIONS: Final[Mapping[Action, Mapping[ActorKind, frozenset[OrderState]]]] = {
    Action.CREATE_DRAFT: {_AI: ANY_STATE, _OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.ADD_ITEM: {_AI: ANY_STATE, _OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.REMOVE_ITEM: {_AI: ANY_STATE, _OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.SET_CUSTOMER_DETAILS: {_AI: BEFORE_PAYMENT, _OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.REQUEST_CHECKOUT: {_AI: ANY_STATE, _OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.CANCEL: {_AI: BEFORE_PAYMENT, _OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.FULFIL: {_OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.CLOSE: {_OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.REFUND: {_OWNER: ANY_STATE, _STAFF: ANY_STATE},
    Action.MARK_PAID: {_SYSTEM: ANY_STATE},
    Action.MARK_REFUNDED: {_SYSTEM: ANY_STATE},
    Action.PAYMENT_EXPIRED: {_SYSTEM: ANY_STATE},
    Action.PAYMENT_FAILED: {_SYSTEM: ANY_STATE},
    # The catalog is the team's: the AI never sets a price or stock, and payments never edits products.
    Action.UPSERT_PRODUCT: {_OWNER: ANY_STATE, _STAFF: ANY_STATE},
}

# None: orders.events.v1 has no change name for a return to draft, so an expiry or a failure publishes nothing
# (payments already published the expiry; the next OrderChanged carries the draft snapshot).
CHANGES: Final[Mapping[Action, Change | None]] = {
    Action.CREATE_DRAFT: "draft_created",
    Action.ADD_ITEM: "item_added",
    Action.REMOVE_ITEM: "item_removed",
    Action.SET_CUSTOMER_DETAILS: "customer_details_set",
    Action.REQUEST_CHECKOUT: "checkout_requested",
    Action.CANCEL: "cancelled",
    Action.FULFIL: "fulfilled",
    Action.CLOSE: "closed",
    Action.REFUND: "refunded",
    Action.MARK_PAID: "paid",
    Action.MARK_REFUNDED: "refunded",
    Action.PAYMENT_EXPIRED: None,
    Action.PAYMENT_FAILED: None,
}

# A payment fact the order already reflects is a redelivery or arrives late: it changes nothing.
PAYMENT_FACT_ALREADY_APPLIED: Final[Mapping[Action, frozenset[OrderState]]] = {
    Action.MARK_PAID: frozenset({S.PAID, S.FULFILLED, S.CLOSED}),
    Action.MARK_REFUNDED: frozenset({S.REFUNDED}),
    Action.PAYMENT_EXPIRED: ANY_STATE - {S.AWAITING_PAYMENT},
    Action.PAYMENT_FAILED: ANY_STATE - {S.AWAITING_PAYMENT},
}


def decide(
    order: Order | None,
    command: Command,
    *,
    products: Mapping[str, ProductInfo],
    tenant_id: UUID,
    now: datetime,
) -> Decision:
    """Accept or reject one command against the order as it stands (None: no such order yet).

    `products` is the tenant's catalog (at least `products_needed`); prices come only from it.
    """
    action = Action(command.type)
    try:
        if isinstance(command, CreateDraft):
            return _create_draft(order, command, tenant_id=tenant_id, now=now)
        current = _existing(order, tenant_id)
        target = check_transition(current, action, command.actor.kind)
        if command.expected_version is not None and command.expected_version != current.version:
            raise Refused(R.STALE_VERSION, f"the order is at version {current.version}")
        return _accept(current, _edit(current, command, products), action=action, target=target, now=now)
    except Refused as refused:
        return Rejected(refused.reason, refused.detail)


def decide_payment(order: Order | None, fact: Action, *, tenant_id: UUID, now: datetime) -> Decision:
    """Apply a payment fact (actor system) to the order it names; a rejected `mark_paid` asks for a refund."""
    if fact not in PAYMENT_FACT_ALREADY_APPLIED:
        raise ValueError(f"{fact} is not a payment fact")
    try:
        current = _existing(order, tenant_id)
        if current.state in PAYMENT_FACT_ALREADY_APPLIED[fact]:
            return Unchanged(f"{fact} changes nothing for an order that is {current.state}")
        target = check_transition(current, fact, ActorKind.SYSTEM)
        return _accept(current, current, action=fact, target=target, now=now)
    except Refused as refused:
        if fact is not Action.MARK_PAID:
            return Rejected(refused.reason, refused.detail)
        # Money arrived that this order will not take (closed, back in draft after its link expired,
        # unknown): it never revives the order, and the rejection is what asks for the refund.
        closed = refused.reason is R.ORDER_CLOSED
        return Rejected(refused.reason, REFUND_REQUIRED if closed else f"{refused.detail}: refund required")


def check_actor(action: Action, actor: ActorKind) -> frozenset[OrderState]:
    """The order states in which `actor` may take `action`, or Refused when never."""
    allowed = PERMISSIONS[action].get(actor)
    if allowed is None:
        raise Refused(R.NOT_PERMITTED_FOR_ACTOR, f"{actor} may not {action}")
    return allowed


def check_transition(order: Order, action: Action, actor: ActorKind) -> OrderState:
    """The state `action` leads to, or Refused: terminal first, then actor, transition, actor-in-state."""
    if order.state in TERMINAL:
        raise Refused(R.ORDER_CLOSED, f"the order is {order.state}; it cannot change")
    allowed = check_actor(action, actor)
    target = TRANSITIONS[action].get(order.state)
    if target is None:
        raise Refused(R.INVALID_TRANSITION, f"cannot {action} an order that is {order.state}")
    if order.state not in allowed:
        raise Refused(R.NOT_PERMITTED_FOR_ACTOR, f"{actor} may not {action} an order that is {order.state}")
    return target


def stock_effect(before: OrderState, after: OrderState) -> StockEffect:
    if before is S.DRAFT and after is S.AWAITING_PAYMENT:
        return StockEffect.RESERVE
    if before in HOLDS_STOCK and after in RETURNS_STOCK:
        return StockEffect.RELEASE
    return StockEffect.NONE


def products_needed(order: Order | None, command: Command) -> frozenset[str]:
    """The SKUs whose catalog entries `decide` needs for this command."""
    if isinstance(command, AddItem):
        return frozenset({command.sku})
    if isinstance(command, RequestCheckout) and order is not None:
        return frozenset(line.sku for line in order.lines)
    return frozenset()


def _create_draft(order: Order | None, command: CreateDraft, *, tenant_id: UUID, now: datetime) -> Decision:
    check_actor(Action.CREATE_DRAFT, command.actor.kind)
    if order is not None and order.tenant_id != tenant_id:
        raise Refused(R.CROSS_TENANT, "the order belongs to another tenant")
    if order is not None:
        raise Refused(R.ORDER_EXISTS, f"the order exists and is {order.state}")
    if command.expected_version not in (None, 0):
        raise Refused(R.STALE_VERSION, "a new order has no version yet")
    draft = Order(
        order_id=command.order_id,
        tenant_id=tenant_id,
        state=S.DRAFT,
        version=1,
        updated_at=now,
        conversation_id=command.conversation_id,
        channel_address=command.channel_address,
    )
    return Accepted(order=draft, change=CHANGES[Action.CREATE_DRAFT])


def _existing(order: Order | None, tenant_id: UUID) -> Order:
    if order is None:
        raise Refused(R.UNKNOWN_ORDER, "no such order")
    if order.tenant_id != tenant_id:
        raise Refused(R.CROSS_TENANT, "the order belongs to another tenant")
    return order


def _edit(order: Order, command: Command, products: Mapping[str, ProductInfo]) -> Order:
    match command:
        case AddItem():
            return add_line(order, catalog_product(products, command.sku), command.quantity)
        case RemoveItem():
            return remove_line(order, command.sku, command.quantity)
        case SetCustomerDetails():
            return replace(order, customer=merge_details(order.customer, command.details))
        case RequestCheckout():
            return reprice_for_checkout(order, products)
        case _:
            return order


def _accept(before: Order, after: Order, *, action: Action, target: OrderState, now: datetime) -> Accepted:
    changed = replace(after, state=target, version=before.version + 1, updated_at=now)
    return Accepted(
        order=changed, change=CHANGES[action], stock=stock_effect(before.state, target), previous=before.state
    )
