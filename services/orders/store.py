"""OrderStore: orders, stock and processed-message bookkeeping over SQL, plus catalog seeding."""

import re
import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Executable, bindparam, delete, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from schemas.envelope import Actor, Envelope
from schemas.orders import OrderLine, ProductSnapshot
from sellmesh.db import row_values, session_scope
from services.orders.audit import audit_row
from services.orders.catalog import CatalogDecision
from services.orders.order import MAX_TOTAL_MINOR, Accepted, Decision, Order, ProductInfo, StockEffect
from services.orders.tables import (
    AuditRow,
    LineRow,
    OrderRow,
    ProcessedRow,
    ProductRow,
    address_columns,
    line_values,
    read_order,
)

_SKU = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class Conflict(Exception):
    """Another transaction changed what this one decided on; decide again on fresh state."""


class OutOfStock(Conflict):
    def __init__(self, sku: str) -> None:
        super().__init__(f"{sku} was reserved by another order meanwhile")
        self.sku = sku


class VersionConflict(Conflict):
    pass


class OrderStore:
    """Sync methods over one engine; the caller runs them in one transaction (`transaction()`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def transaction(self) -> AbstractContextManager[Session]:
        return session_scope(self.engine)

    def processed(self, session: Session, *, tenant_id: uuid.UUID, message_id: uuid.UUID) -> ProcessedRow | None:
        return session.get(ProcessedRow, (tenant_id, message_id))

    def load_order(self, session: Session, order_id: uuid.UUID) -> Order | None:
        """The order with this id whatever its tenant: the rules reject another tenant's order by name."""
        return read_order(session, order_id)

    def load_products(self, session: Session, *, tenant_id: uuid.UUID, skus: Iterable[str]) -> dict[str, ProductInfo]:
        wanted = sorted(set(skus))
        if not wanted:
            return {}
        query = select(ProductRow).where(col(ProductRow.tenant_id) == tenant_id, col(ProductRow.sku).in_(wanted))
        return {row.sku: row.info() for row in session.exec(query)}

    def apply(self, session: Session, accepted: Accepted, *, expected_version: int | None) -> None:
        """Persist an accepted decision: the order, its lines, and its stock effect."""
        self.save_order(session, accepted.order, expected_version=expected_version)
        if accepted.stock is StockEffect.RESERVE:
            self.reserve_stock(session, tenant_id=accepted.order.tenant_id, lines=accepted.order.lines)
        elif accepted.stock is StockEffect.RELEASE:
            self.release_stock(session, tenant_id=accepted.order.tenant_id, lines=accepted.order.lines)

    def save_order(self, session: Session, order: Order, *, expected_version: int | None) -> None:
        """Insert a new order (expected_version None) or update the one still at `expected_version`."""
        values = _order_values(order)
        if expected_version is None:
            _insert(session, _ORDER_INSERT, values)
        else:
            # Only the row still at the version the decision was made on may change.
            kept = ("order_id", "tenant_id", "created_at")
            changes = {name: value for name, value in values.items() if name not in kept}
            changed = session.execute(
                _ORDER_UPDATE, {**changes, "b_order_id": order.order_id, "b_version": expected_version}
            )
            if changed.rowcount != 1:  # type: ignore[attr-defined]
                raise VersionConflict(f"order {order.order_id} is no longer at version {expected_version}")
            session.execute(_LINES_DELETE, {"b_order_id": order.order_id})
        lines = line_values(order)
        if lines:
            _insert(session, _LINE_INSERT, lines)

    def reserve_stock(self, session: Session, *, tenant_id: uuid.UUID, lines: Iterable[OrderLine]) -> None:
        """Take each line's units off the shelf, or raise OutOfStock and let the caller roll back.

        The check and the decrement are one conditional UPDATE, so two orders racing for the
        last units cannot both win, on SQLite or PostgreSQL. NULL stock (unlimited) stays NULL.
        Products are locked in SKU order, so two orders sharing products cannot deadlock.
        """
        for line in sorted(lines, key=lambda line: line.sku):
            taken = session.execute(
                _STOCK_TAKE, {"b_tenant": tenant_id, "b_sku": line.sku, "b_quantity": line.quantity}
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise OutOfStock(line.sku)

    def release_stock(self, session: Session, *, tenant_id: uuid.UUID, lines: Iterable[OrderLine]) -> None:
        for line in sorted(lines, key=lambda line: line.sku):
            session.execute(_STOCK_RETURN, {"b_tenant": tenant_id, "b_sku": line.sku, "b_quantity": line.quantity})

    def record(
        self,
        session: Session,
        *,
        source: Envelope,
        order_id: uuid.UUID | None,
        sku: str | None = None,
        actor: Actor,
        action: str,
        decision: Decision | CatalogDecision,
        current: str | None,
        outcome: Envelope | None,
    ) -> None:
        """Remember the message as processed, with the event it produced, and audit the decision.

        `current` is the state the decision was made on (the order's, or the product's).
        """
        at = datetime.now(UTC)
        processed = {
            "tenant_id": source.tenant_id,
            "message_id": source.event_id,
            "order_id": order_id,
            "outcome": None if outcome is None else outcome.model_dump_json(),
            "processed_at": at,
        }
        # A concurrent worker that handled the same message first makes this insert collide.
        _insert(session, _PROCESSED_INSERT, processed)
        audit = audit_row(
            source, order_id=order_id, sku=sku, actor=actor, action=action, decision=decision, current=current, at=at
        )
        _insert(session, _AUDIT_INSERT, row_values(audit))

    def load_product(self, session: Session, *, tenant_id: uuid.UUID, sku: str) -> ProductSnapshot | None:
        query = select(ProductRow).where(col(ProductRow.tenant_id) == tenant_id, col(ProductRow.sku) == sku)
        row = session.exec(query).first()
        return None if row is None else row.snapshot()

    def save_product(
        self, session: Session, *, tenant_id: uuid.UUID, product: ProductSnapshot, keep_stock: bool = False
    ) -> None:
        """Create or replace a product; a rival creating the same SKU first makes `record`'s insert collide.

        With `keep_stock`, an existing product's stock column is not written at all: the snapshot's figure was
        read without a lock, and a reservation committed since must not be undone."""
        upsert_product(
            session,
            tenant_id=tenant_id,
            sku=product.sku,
            name=product.name,
            description=product.description,
            price_minor=product.price.amount_minor,
            currency=product.price.currency,
            stock=product.stock,
            attributes=dict(product.attributes),
            active=product.active,
            keep_stock=keep_stock,
        )


def _insert(session: Session, statement: Executable, values: dict[str, Any] | list[dict[str, Any]]) -> None:
    """A Core INSERT in the session's transaction; a unique key a rival transaction filled first is a Conflict."""
    try:
        # ORM work still pending (a catalog upsert) is written first, so its collision is a Conflict here too.
        session.flush()
        session.execute(statement, values)
    except IntegrityError as exc:
        raise Conflict(str(exc.orig)) from exc


def _order_values(order: Order) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "tenant_id": order.tenant_id,
        "state": order.state.value,
        "version": order.version,
        "conversation_id": order.conversation_id,
        "currency": order.currency,
        "total_minor": order.total_minor,
        "customer": order.customer.model_dump(exclude_none=True),
        "created_at": order.updated_at,
        "updated_at": order.updated_at,
        **address_columns(order),
    }


# Every command runs these: Core statements built once, their values bound at execution. The ORM's unit of work
# and a statement built per call (SQLAlchemy walks a new statement's values for its cache key) cost several
# times the statements' own round trips.
_ORDERS = OrderRow.__table__  # type: ignore[attr-defined]
_LINES = LineRow.__table__  # type: ignore[attr-defined]
_PRODUCTS = ProductRow.__table__  # type: ignore[attr-defined]
_ORDER_INSERT = insert(_ORDERS)
# The SET clause comes from the names of the values passed: everything but the order's id, tenant and creation time.
_ORDER_UPDATE = update(_ORDERS).where(
    _ORDERS.c.order_id == bindparam("b_order_id"), _ORDERS.c.version == bindparam("b_version")
)
_LINES_DELETE = delete(_LINES).where(_LINES.c.order_id == bindparam("b_order_id"))
_LINE_INSERT = insert(_LINES)
_PROCESSED_INSERT = insert(ProcessedRow.__table__)  # type: ignore[attr-defined]
_AUDIT_INSERT = insert(AuditRow.__table__)  # type: ignore[attr-defined]
_MINE = (_PRODUCTS.c.tenant_id == bindparam("b_tenant"), _PRODUCTS.c.sku == bindparam("b_sku"))
_STOCK_TAKE = (
    update(_PRODUCTS)
    .where(*_MINE, or_(_PRODUCTS.c.stock.is_(None), _PRODUCTS.c.stock >= bindparam("b_quantity")))
    .values(stock=_PRODUCTS.c.stock - bindparam("b_quantity"))
)
_STOCK_RETURN = update(_PRODUCTS).where(*_MINE).values(stock=_PRODUCTS.c.stock + bindparam("b_quantity"))


def upsert_product(
    session: Session,
    *,
    tenant_id: uuid.UUID,
    sku: str,
    name: str,
    description: str,
    price_minor: int,
    currency: str,
    stock: int | None,
    attributes: dict[str, str] | None = None,
    active: bool = True,
    keep_stock: bool = False,
) -> None:
    """Create or replace the tenant's product `sku` (demo seeding and catalog imports); `keep_stock` leaves an
    existing product's stock as it stands."""
    if not _SKU.match(sku):
        raise ValueError(f"invalid sku {sku!r}")
    if not _CURRENCY.match(currency):
        raise ValueError(f"invalid currency {currency!r}")
    if not 0 <= price_minor <= MAX_TOTAL_MINOR:
        raise ValueError(f"invalid price {price_minor}")
    if stock is not None and stock < 0:
        raise ValueError(f"invalid stock {stock}")
    if not 0 < len(name) <= 500:
        raise ValueError("a product name has 1 to 500 characters")
    product = ProductRow(
        tenant_id=tenant_id,
        sku=sku,
        name=name,
        description=description,
        price_minor=price_minor,
        currency=currency,
        stock=stock,
        attributes=dict(attributes or {}),
        active=active,
        updated_at=datetime.now(UTC),
    )
    query = select(ProductRow).where(col(ProductRow.tenant_id) == tenant_id, col(ProductRow.sku) == sku)
    existing = session.exec(query).first()
    if existing is None:
        session.add(product)
    else:
        kept = {"id", "stock"} if keep_stock else {"id"}
        session.add(existing.sqlmodel_update(product.model_dump(exclude=kept)))
