"""orders.* topics: commands proposed by the agent or owners, and what the orders service decided."""

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, StringConstraints, model_validator

from schemas.envelope import NO_NUL, Actor, Channel, Envelope, ExternalId, Frozen, Money, ShortText, Sku

Quantity = Annotated[int, Field(ge=1, le=1000)]
ProductName = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NO_NUL)]
Description = Annotated[str, StringConstraints(max_length=4000, pattern=NO_NUL)]
# Attributes are shown to customers and searched; bound them like every other free text.
Attributes = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)],
        Annotated[str, StringConstraints(max_length=256, pattern=NO_NUL)],
    ],
    Field(max_length=32),
]
Stock = Annotated[int, Field(ge=0, le=1_000_000_000)]


class OrderCommandBase(Envelope):
    """A proposed change to one order. `event_id` is the command id that makes it idempotent."""

    order_id: UUID
    actor: Actor
    expected_version: Annotated[int, Field(ge=0)] | None = None


class ChannelAddress(Frozen):
    """Where the customer of an order's conversation is reached, so orders can ask for a person about it."""

    channel: Channel
    channel_account_id: ExternalId
    customer_id: ExternalId


class CreateDraft(OrderCommandBase):
    type: Literal["create_draft"] = "create_draft"
    conversation_id: ExternalId | None = None
    channel_address: ChannelAddress | None = None


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


class ProductFields(Frozen):
    """A catalog product as owners and staff set it. `stock` is the units left to sell; None is unlimited."""

    name: ProductName
    description: Description = ""
    attributes: Attributes = Field(default_factory=dict)
    price: Money
    stock: Stock | None
    active: bool = True


class CatalogCommandBase(Envelope):
    """A proposed change to one product of the tenant's catalog; the Kafka key is the SKU."""

    sku: Sku
    actor: Actor


class UpsertProduct(ProductFields, CatalogCommandBase):
    """Create the tenant's product `sku`, or replace every field of it.

    `stock` replaces the units left to sell, as of when orders applies it: units pending orders hold are
    already taken off, and come back only if those orders give them up. With `keep_stock`, the stock stays
    as orders holds it and `stock` is used only for a product that does not exist yet: a change of other
    fields (taking a product off sale, say) must not undo reservations made since the sender read it.
    """

    type: Literal["upsert_product"] = "upsert_product"
    keep_stock: bool = False


OrderCommand = Annotated[
    CreateDraft
    | AddItem
    | RemoveItem
    | SetCustomerDetails
    | RequestCheckout
    | CancelOrder
    | FulfilOrder
    | CloseOrder
    | RefundOrder
    | UpsertProduct,
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


class CommandRejected(Envelope):
    """A command was refused; `reason` is machine-readable so the agent can tell the truth.

    It names the order of an order command or payment fact, or the `product_sku` of a catalog
    command: exactly one of the two. A rejected `mark_paid` means money arrived for an order that
    will not take it: payments must refund it.
    """

    type: Literal["command_rejected"] = "command_rejected"
    order_id: UUID | None = None
    product_sku: Sku | None = None
    command_id: UUID | None = None
    command_type: ShortText
    actor: Actor
    reason: RejectionReason
    detail: ShortText = ""

    @model_validator(mode="after")
    def _names_an_order_or_a_product(self) -> "CommandRejected":
        if (self.order_id is None) == (self.product_sku is None):
            raise ValueError("a rejection names either an order_id or a product_sku")
        return self


class ProductSnapshot(ProductFields):
    sku: Sku


class CatalogChanged(Envelope):
    """A catalog command was accepted; `product` is the catalog entry after it."""

    type: Literal["catalog_changed"] = "catalog_changed"
    command_id: UUID
    change: Literal["product_created", "product_updated"]
    actor: Actor
    product: ProductSnapshot


OrderEvent = Annotated[OrderChanged | CommandRejected | CatalogChanged, Field(discriminator="type")]
