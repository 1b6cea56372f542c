"""Catalog rules: who may change a product, and what a catalog command decides (pure)."""

from dataclasses import dataclass
from typing import Literal

from schemas.envelope import Money
from schemas.orders import ProductSnapshot, UpsertProduct
from services.orders.domain import Action, check_actor
from services.orders.order import Refused, Rejected

CatalogChange = Literal["product_created", "product_updated"]
CatalogCommand = UpsertProduct


@dataclass(frozen=True)
class CatalogAccepted:
    """The product after the change, and as it was before (None: it is new)."""

    product: ProductSnapshot
    change: CatalogChange
    previous: ProductSnapshot | None = None


CatalogDecision = CatalogAccepted | Rejected


def decide_catalog(current: ProductSnapshot | None, command: CatalogCommand) -> CatalogDecision:
    """Accept or reject a catalog command against the tenant's product as it stands (None: no such SKU).

    The product is looked up by tenant and SKU, so a command can only ever reach its own tenant's catalog.
    """
    try:
        check_actor(Action(command.type), command.actor.kind)
    except Refused as refused:
        return Rejected(refused.reason, refused.detail)
    product = ProductSnapshot(
        sku=command.sku,
        name=command.name,
        description=command.description,
        attributes=command.attributes,
        price=command.price,
        stock=current.stock if command.keep_stock and current is not None else command.stock,
        active=command.active,
    )
    return CatalogAccepted(product, "product_created" if current is None else "product_updated", current)


def product_state(product: ProductSnapshot | None) -> str | None:
    """The audit trail's before/after state of a product: absent (None), active or inactive."""
    if product is None:
        return None
    return "active" if product.active else "inactive"


def describe_change(before: ProductSnapshot | None, after: ProductSnapshot) -> str:
    """What an accepted upsert changed, for the audit trail: price, stock, name and activity."""
    if before is None:
        return f"created at {_money(after.price)}, stock {_stock(after.stock)}"
    parts = []
    if before.price != after.price:
        parts.append(f"price {_money(before.price)} -> {_money(after.price)}")
    if before.stock != after.stock:
        parts.append(f"stock {_stock(before.stock)} -> {_stock(after.stock)}")
    if before.name != after.name:
        parts.append("name changed")
    if (before.description, dict(before.attributes)) != (after.description, dict(after.attributes)):
        parts.append("description or attributes changed")
    if before.active != after.active:
        parts.append("activated" if after.active else "deactivated")
    return "; ".join(parts) or "no change"


def _money(money: Money) -> str:
    return f"{money.amount_minor} {money.currency} minor units"


def _stock(stock: int | None) -> str:
    return "unlimited" if stock is None else str(stock)
