"""The order and catalog values the rules work on, and the pure arithmetic of an order's lines."""

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal
from uuid import UUID

from schemas.envelope import Money
from schemas.orders import (
    AddItem,
    CancelOrder,
    ChannelAddress,
    CloseOrder,
    CreateDraft,
    CustomerDetails,
    FulfilOrder,
    OrderLine,
    OrderSnapshot,
    OrderState,
    RefundOrder,
    RejectionReason,
    RemoveItem,
    RequestCheckout,
    SetCustomerDetails,
)

# ISO 4217 "no currency": an order takes its currency from its first line, so an empty
# order has none yet, but its snapshot still needs a total.
NO_CURRENCY: Final = "XXX"
MAX_TOTAL_MINOR: Final = 10**12  # the bound of schemas Money; beyond it no snapshot can be built
MAX_LINE_QUANTITY: Final = 1000  # the bound of schemas Quantity


Command = (
    CreateDraft
    | AddItem
    | RemoveItem
    | SetCustomerDetails
    | RequestCheckout
    | CancelOrder
    | FulfilOrder
    | CloseOrder
    | RefundOrder
)
Change = Literal[
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


class StockEffect(StrEnum):
    """What a decision does to the catalog's stock; the store applies it to the order's lines."""

    NONE = "none"
    RESERVE = "reserve"  # checkout takes the units off the shelf; payment later commits them as they are
    RELEASE = "release"  # the order left the states that hold stock before its goods shipped


class Refused(Exception):
    """A command the rules turn down; `decide` returns it as a rejection, never raises it."""

    def __init__(self, reason: RejectionReason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ProductInfo:
    """A catalog product as the rules see it. `stock` None means unlimited."""

    sku: str
    name: str
    price_minor: int
    currency: str
    stock: int | None
    active: bool = True

    @property
    def price(self) -> Money:
        return Money(amount_minor=self.price_minor, currency=self.currency)


@dataclass(frozen=True)
class Order:
    """An order as the orders service keeps it: the wire snapshot plus the tenant that owns it."""

    order_id: UUID
    tenant_id: UUID
    state: OrderState
    version: int
    updated_at: datetime
    conversation_id: str | None = None
    lines: tuple[OrderLine, ...] = ()
    customer: CustomerDetails = field(default_factory=CustomerDetails)
    channel_address: ChannelAddress | None = None  # where to reach the customer when a person must step in

    @property
    def currency(self) -> str:
        return self.lines[0].unit_price.currency if self.lines else NO_CURRENCY

    @property
    def total_minor(self) -> int:
        return sum(line.quantity * line.unit_price.amount_minor for line in self.lines)

    def quantity_of(self, sku: str) -> int:
        return sum(line.quantity for line in self.lines if line.sku == sku)

    def snapshot(self) -> OrderSnapshot:
        return OrderSnapshot(
            order_id=self.order_id,
            state=self.state,
            version=self.version,
            conversation_id=self.conversation_id,
            lines=self.lines,
            total=Money(amount_minor=self.total_minor, currency=self.currency),
            customer=self.customer,
        )


def catalog_product(products: Mapping[str, ProductInfo], sku: str) -> ProductInfo:
    """The active catalog product for `sku`; inactive or missing products cannot be sold."""
    product = products.get(sku)
    if product is None or not product.active or product.sku != sku:
        raise Refused(RejectionReason.UNKNOWN_PRODUCT, f"no product {sku!r} in this catalog")
    return product


def check_sellable(order: Order, product: ProductInfo, quantity: int) -> None:
    """Raise unless `quantity` units of `product` fit the order's currency, the line bound and the stock."""
    if order.lines and product.currency != order.currency:
        raise Refused(
            RejectionReason.CURRENCY_MISMATCH,
            f"{product.sku} is priced in {product.currency}, order in {order.currency}",
        )
    if quantity > MAX_LINE_QUANTITY:
        raise Refused(RejectionReason.INVALID_TRANSITION, f"at most {MAX_LINE_QUANTITY} units of one product")
    if product.stock is not None and quantity > product.stock:
        raise Refused(RejectionReason.OUT_OF_STOCK, f"{product.sku}: {product.stock} available, {quantity} wanted")


def check_total(order: Order) -> Order:
    if order.total_minor > MAX_TOTAL_MINOR:
        raise Refused(RejectionReason.INVALID_TRANSITION, "order total too large")
    return order


def priced_line(product: ProductInfo, quantity: int) -> OrderLine:
    # Name and price always come from the catalog, never from the command.
    return OrderLine(sku=product.sku, name=product.name, quantity=quantity, unit_price=product.price)


def add_line(order: Order, product: ProductInfo, quantity: int) -> Order:
    """Add units of a product; an existing line is merged and re-priced from the catalog."""
    wanted = order.quantity_of(product.sku) + quantity
    check_sellable(order, product, wanted)
    line = priced_line(product, wanted)
    if order.quantity_of(product.sku):
        lines = tuple(line if old.sku == product.sku else old for old in order.lines)
    else:
        lines = (*order.lines, line)
    return check_total(replace(order, lines=lines))


def remove_line(order: Order, sku: str, quantity: int) -> Order:
    """Remove units of a line; removing as many as the line holds, or more, drops the line."""
    if not order.quantity_of(sku):
        raise Refused(RejectionReason.ITEM_NOT_IN_ORDER, f"{sku} is not in the order")
    lines: list[OrderLine] = []
    for line in order.lines:
        if line.sku != sku:
            lines.append(line)
        elif line.quantity > quantity:
            lines.append(line.model_copy(update={"quantity": line.quantity - quantity}))
    return replace(order, lines=tuple(lines))


def reprice_for_checkout(order: Order, products: Mapping[str, ProductInfo]) -> Order:
    """Re-read every line from the catalog: the payment link must carry today's price and stock."""
    if not order.lines:
        raise Refused(RejectionReason.EMPTY_ORDER, "the order has no items")
    lines: list[OrderLine] = []
    for line in order.lines:
        product = catalog_product(products, line.sku)
        if product.currency != order.currency:
            raise Refused(RejectionReason.CURRENCY_MISMATCH, f"{product.sku} is now priced in {product.currency}")
        check_sellable(order, product, line.quantity)
        lines.append(priced_line(product, line.quantity))
    return check_total(replace(order, lines=tuple(lines)))


def merge_details(current: CustomerDetails, update: CustomerDetails) -> CustomerDetails:
    """Fields the update leaves out keep their value, so details can arrive one at a time."""
    given = update.model_dump(exclude_none=True)
    return current.model_copy(update=given) if given else current


@dataclass(frozen=True)
class Accepted:
    """The order after the change; `change` None is a change orders.events.v1 has no name for."""

    order: Order
    change: Change | None
    stock: StockEffect = StockEffect.NONE
    previous: OrderState | None = None


@dataclass(frozen=True)
class Rejected:
    reason: RejectionReason
    detail: str = ""


@dataclass(frozen=True)
class Unchanged:
    """A payment fact the order already reflects: nothing to store, nothing to publish."""

    detail: str


Decision = Accepted | Rejected | Unchanged
