"""orders.* topics: commands proposed by the agent or owners, and what the orders service decided."""

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StringConstraints

from schemas.envelope import Actor, Envelope, ExternalId, Frozen, Money, ShortText, Sku

Quantity = Annotated[int, Field(ge=1, le=1000)]


class OrderCommandBase(Envelope):
    """A proposed change to one order. `event_id` is the command id that makes it idempotent."""

    order_id: UUID
    actor: Actor
    expected_version: Annotated[int, Field(ge=0)] | None = None


class CreateDraft(OrderCommandBase):
    type: Literal["create_draft"] = "create_draft"
    conversation_id: ExternalId | None = None


class AddItem(OrderCommandBase):
    type: Literal["add_item"] = "add_item"
    sku: Sku
    quantity: Quantity


class RemoveItem(OrderCommandBase):
    type: Literal["remove_item"] = "remove_item"
    sku: Sku
    quantity: Quantity


class CustomerDetails(Frozen):
    name: ShortText | None = None
    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    address: ShortText | None = None


class SetCustomerDetails(OrderCommandBase):
    type: Literal["set_customer_details"] = "set_customer_details"
    details: CustomerDetails


class RequestCheckout(OrderCommandBase):
    type: Literal["request_checkout"] = "request_checkout"


class CancelOrder(OrderCommandBase):
    type: Literal["cancel"] = "cancel"
    reason: ShortText = ""


class FulfilOrder(OrderCommandBase):
    type: Literal["fulfil"] = "fulfil"


class CloseOrder(OrderCommandBase):
    type: Literal["close"] = "close"


class RefundOrder(OrderCommandBase):
    type: Literal["refund"] = "refund"
    reason: ShortText = ""


OrderCommand = Annotated[
    CreateDraft
    | AddItem
    | RemoveItem
    | SetCustomerDetails
    | RequestCheckout
    | CancelOrder
    | FulfilOrder
    | CloseOrder
    | RefundOrder,
    Field(discriminator="type"),
]


class OrderState(StrEnum):
    DRAFT = "draft"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    FULFILLED = "fulfilled"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"


class OrderLine(Frozen):
    sku: Sku
    name: ShortText
    quantity: Quantity
    unit_price: Money


class OrderSnapshot(Frozen):
    """The order as it stands after an accepted change; consumers never need to query orders."""

    order_id: UUID
    state: OrderState
    version: Annotated[int, Field(ge=0)]
    conversation_id: ExternalId | None = None
    lines: tuple[OrderLine, ...] = ()
    total: Money
    customer: CustomerDetails = CustomerDetails()


class OrderEventBase(Envelope):
    order_id: UUID
    command_id: UUID | None = None


class OrderChanged(OrderEventBase):
    """A command was accepted; `change` names which one, `order` is the state after it."""

    type: Literal["order_changed"] = "order_changed"
    change: Literal[
        "draft_created",
        "item_added",
        "item_removed",
        "customer_details_set",
        "checkout_requested",
        "paid",
        "fulfilled",
        "closed",
        "cancelled",
        "refunded",
    ]
    actor: Actor
    order: OrderSnapshot


class RejectionReason(StrEnum):
    ORDER_CLOSED = "order_closed"
    NOT_PERMITTED_FOR_ACTOR = "not_permitted_for_actor"
    INVALID_TRANSITION = "invalid_transition"
    OUT_OF_STOCK = "out_of_stock"
    UNKNOWN_PRODUCT = "unknown_product"
    UNKNOWN_ORDER = "unknown_order"
    ORDER_EXISTS = "order_exists"
    CROSS_TENANT = "cross_tenant"
    STALE_VERSION = "stale_version"
    EMPTY_ORDER = "empty_order"
    CURRENCY_MISMATCH = "currency_mismatch"
    ITEM_NOT_IN_ORDER = "item_not_in_order"


class CommandRejected(OrderEventBase):
    """A command was refused; `reason` is machine-readable so the agent can tell the truth."""

    type: Literal["command_rejected"] = "command_rejected"
    command_type: ShortText
    actor: Actor
    reason: RejectionReason
    detail: ShortText = ""


OrderEvent = Annotated[OrderChanged | CommandRejected, Field(discriminator="type")]
