"""The read-only query module other services use to see a tenant's catalog and orders; nothing here writes."""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final, Protocol, cast
from uuid import UUID

from sqlalchemy import Connection, Engine, bindparam, func
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from schemas.envelope import ActorKind, Money
from schemas.orders import ChannelAddress, OrderSnapshot, OrderState, RejectionReason
from sellmesh.db import autocommit, in_thread
from sellmesh.readcache import ReadCache, clear_on_writes
from services.orders.tables import AuditRow, LineRow, OrderRow, ProductRow, order_from_rows, read_order

MAX_AUDIT_PAGE: Final = 500
MAX_ORDER_PAGE: Final = 200
# States an order reaches only after its payment arrived.
PAID_STATES: Final = frozenset({OrderState.PAID, OrderState.FULFILLED, OrderState.CLOSED, OrderState.REFUNDED})

_WORD = re.compile(r"[^\W_]+")
_MIN_PREFIX = 3
# Words nearly every customer question has; counting them would rank a mug that is "nice to have"
# next to the blue hoodie someone asked "do you have" about.
# fmt: off
_FILLER = frozenset({
    "a", "an", "and", "any", "are", "can", "do", "does", "for", "have", "i", "in", "is", "it", "me",
    "my", "of", "on", "or", "please", "the", "there", "this", "to", "want", "what", "with", "you", "your",
})
# fmt: on


@dataclass(frozen=True)
class ProductView:
    sku: str
    name: str
    description: str
    price: Money
    stock: int | None  # None: unlimited
    attributes: Mapping[str, str]
    active: bool = True


def search_products(engine: Engine, tenant_id: UUID, text: str, limit: int = 5) -> list[ProductView]:
    """The tenant's active products ranked by how many words of `text` they contain, best first.

    A word counts when it is a word of the product's name, description, attributes or SKU
    (case-insensitive, a trailing plural "s" ignored), or begins one (words of 3+ letters), so
    "shirt" finds "T-shirts" but "red" does not find "bored"; filler words ("do", "you", "a")
    never count. Products matching no word are left out, ties keep name order; text without
    words returns the first active products by name. Ranking runs in
    Python over the tenant's catalog: small-business catalogs are small, and the result is the
    same on SQLite and PostgreSQL.
    """
    if limit <= 0:
        return []
    with autocommit(engine) as connection:
        products = _active_products(connection, tenant_id)
    wanted = _words(text)
    if not wanted:
        return [_view(row) for row in products[:limit]]
    scored = [(_score(wanted, row), row) for row in products]
    ranked = sorted((pair for pair in scored if pair[0]), key=lambda pair: -pair[0])
    return [_view(row) for _, row in ranked[:limit]]


def list_products(engine: Engine, tenant_id: UUID) -> list[ProductView]:
    """Every active product of the tenant, by name."""
    with autocommit(engine) as connection:
        return [_view(row) for row in _active_products(connection, tenant_id)]


def get_order(engine: Engine, tenant_id: UUID, order_id: UUID) -> OrderSnapshot | None:
    """The order as it stands, or None when it does not exist or belongs to another tenant."""
    with autocommit(engine) as connection:
        return _order(connection, tenant_id, order_id)


@dataclass(frozen=True)
class OrderContact:
    """Where the customer of an order's conversation is reached, for a person to step in about the order."""

    conversation_id: str
    address: ChannelAddress


def order_contact(engine: Engine, tenant_id: UUID, order_id: UUID) -> OrderContact | None:
    """The order's conversation and channel address; None without both, or for another tenant's order."""
    with autocommit(engine) as connection:
        order = read_order(connection, order_id)
    if order is None or order.tenant_id != tenant_id or order.conversation_id is None:
        return None
    address = order.channel_address
    return None if address is None else OrderContact(conversation_id=order.conversation_id, address=address)


def awaited_checkout(engine: Engine, tenant_id: UUID, order_id: UUID) -> int | None:
    """The order version its checkout was requested at, while the order awaits payment for that checkout; None
    when the order does not await payment (or is unknown, or another tenant's).

    Not the order's version: customer details set since raise it and keep the checkout. So it is the version
    of the latest accepted checkout request, from the audit trail, written in the transaction that made it.
    """
    state = sa_select(col(OrderRow.state)).where(
        col(OrderRow.order_id) == order_id, col(OrderRow.tenant_id) == tenant_id
    )
    version = sa_select(func.max(AuditRow.version)).where(
        col(AuditRow.tenant_id) == tenant_id,
        col(AuditRow.order_id) == order_id,
        col(AuditRow.change) == "checkout_requested",
    )
    with autocommit(engine) as connection:
        if connection.execute(state).scalar() != OrderState.AWAITING_PAYMENT.value:
            return None
        found = connection.execute(version).scalar()
    return found if isinstance(found, int) else None


# A person's word that the order's money goes back: a cancel or a refund by an owner or staff member.
_TAKEN_BACK: Final = ("cancelled", "refunded")
_PEOPLE: Final = (ActorKind.OWNER.value, ActorKind.STAFF.value)


def taken_back_by_person(engine: Engine, tenant_id: UUID, order_id: UUID) -> bool:
    """True when an owner or staff member cancelled or refunded the order (both terminal): money it takes from now
    on is owed back. False for an unknown or another tenant's order."""
    query = (
        sa_select(col(AuditRow.id))
        .where(
            col(AuditRow.tenant_id) == tenant_id,
            col(AuditRow.order_id) == order_id,
            col(AuditRow.outcome) == "accepted",
            col(AuditRow.change).in_(_TAKEN_BACK),
            col(AuditRow.actor_kind).in_(_PEOPLE),
        )
        .limit(1)
    )
    with autocommit(engine) as connection:
        return connection.execute(query).first() is not None


def _order(connection: Connection, tenant_id: UUID, order_id: UUID) -> OrderSnapshot | None:
    order = read_order(connection, order_id)
    return None if order is None or order.tenant_id != tenant_id else order.snapshot()


# The agent reads the active catalog on every turn. A product written in this process (an upsert goes through the
# ORM) clears it at once; other processes, and stock, which every reservation changes, are at most this stale in
# the agent's prompt. Nothing is decided on it: orders reads price and stock afresh for every command.
CATALOG_TTL_SECONDS = 2.0
_CATALOG: ReadCache[tuple[ProductView, ...]] = ReadCache(ttl_seconds=CATALOG_TTL_SECONDS)


clear_on_writes((ProductRow,), _CATALOG)


def order_and_catalog(
    engine: Engine, tenant_id: UUID, order_id: UUID | None
) -> tuple[OrderSnapshot | None, list[ProductView]]:
    """`get_order` (None without an order id) and `list_products`: what one agent turn reads. The catalog comes
    from the cache while it is fresh (`CATALOG_TTL_SECONDS`)."""
    with autocommit(engine) as connection:
        order = _order(connection, tenant_id, order_id) if order_id is not None else None
        products = _CATALOG.get(
            engine, tenant_id, lambda: tuple(_view(row) for row in _active_products(connection, tenant_id))
        )
    return order, list(products or ())


async def order_and_catalog_async(
    engine: Engine, tenant_id: UUID, order_id: UUID | None
) -> tuple[OrderSnapshot | None, list[ProductView]]:
    """`order_and_catalog` from the event loop: a turn with no order whose tenant's catalog is fresh in the cache
    needs no worker thread and no transaction."""
    if order_id is None:
        products = _CATALOG.fresh(engine, tenant_id)
        if products is not None:
            return None, list(products)
    return await in_thread(order_and_catalog, engine, tenant_id, order_id)


def latest_order_for_conversation(engine: Engine, tenant_id: UUID, conversation_id: str) -> OrderSnapshot | None:
    """The most recently changed order of a conversation, whatever its state, or None."""
    with Session(engine) as session:
        query = (
            select(OrderRow)
            .where(col(OrderRow.tenant_id) == tenant_id, col(OrderRow.conversation_id) == conversation_id)
            .order_by(col(OrderRow.updated_at).desc(), col(OrderRow.version).desc())
            .limit(1)
        )
        row = session.exec(query).first()
        return None if row is None else _snapshot(session, row)


@dataclass(frozen=True)
class AuditEntry:
    """One handled command or payment fact: who asked, what was decided, and the state before and after.

    `order_id` names the order, or `sku` the product of a catalog command. States are order states,
    or for a product "active"/"inactive" (None: it did not exist). `id` orders entries and pages them.
    """

    id: int
    order_id: UUID | None
    sku: str | None
    actor_kind: ActorKind
    actor_id: str
    command_type: str
    command_id: UUID
    outcome: str  # accepted, rejected or unchanged
    change: str | None
    from_state: str | None
    to_state: str | None
    reason: RejectionReason | None
    detail: str
    correlation_id: UUID
    at: datetime


def audit_for_order(engine: Engine, tenant_id: UUID, order_id: UUID) -> list[AuditEntry]:
    """Everything asked of one order of the tenant, oldest first; empty for another tenant's order."""
    query = (
        select(AuditRow)
        .where(col(AuditRow.tenant_id) == tenant_id, col(AuditRow.order_id) == order_id)
        .order_by(col(AuditRow.id))
    )
    with Session(engine) as session:
        return [_entry(row) for row in session.exec(query)]


def audit_for_tenant(
    engine: Engine, tenant_id: UUID, *, limit: int = 50, before: int | None = None
) -> list[AuditEntry]:
    """The tenant's audit trail newest first, `limit` (at most 500) entries older than entry id `before`."""
    query = select(AuditRow).where(col(AuditRow.tenant_id) == tenant_id)
    if before is not None:
        query = query.where(col(AuditRow.id) < before)
    query = query.order_by(col(AuditRow.id).desc()).limit(max(0, min(limit, MAX_AUDIT_PAGE)))
    with Session(engine) as session:
        return [_entry(row) for row in session.exec(query)]


def _entry(row: AuditRow) -> AuditEntry:
    assert row.id is not None
    return AuditEntry(
        id=row.id,
        order_id=row.order_id,
        sku=row.sku,
        actor_kind=ActorKind(row.actor_kind),
        actor_id=row.actor_id,
        command_type=row.action,
        command_id=row.message_id,
        outcome=row.outcome,
        change=row.change,
        from_state=row.from_state,
        to_state=row.to_state,
        reason=None if row.reason is None else RejectionReason(row.reason),
        detail=row.detail,
        correlation_id=row.correlation_id,
        at=row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC),  # SQLite keeps no zone
    )


def _snapshot(session: Session, row: OrderRow) -> OrderSnapshot:
    lines = session.exec(select(LineRow).where(col(LineRow.order_id) == row.order_id))
    return order_from_rows(row, lines).snapshot()


class _ProductColumns(Protocol):
    """A product's columns as attributes: a `ProductRow`, or a Core result row of its table."""

    sku: str
    name: str
    description: str
    price_minor: int
    currency: str
    stock: int | None
    attributes: dict[str, str]
    active: bool


_PRODUCTS = ProductRow.__table__  # type: ignore[attr-defined]
# Read on every agent turn whose catalog is not cached: built once, without the ORM's objects or a transaction.
_ACTIVE_PRODUCTS = (
    sa_select(_PRODUCTS)
    .where(_PRODUCTS.c.tenant_id == bindparam("tenant_id"), _PRODUCTS.c.active.is_(True))
    .order_by(_PRODUCTS.c.name, _PRODUCTS.c.sku)
)


def _active_products(connection: Connection, tenant_id: UUID) -> list[_ProductColumns]:
    rows = connection.execute(_ACTIVE_PRODUCTS, {"tenant_id": tenant_id}).all()
    # A Core row carries its table's columns as attributes, which is all `_view` and `_score` read.
    return cast(list[_ProductColumns], rows)


def _view(row: _ProductColumns) -> ProductView:
    return ProductView(
        sku=row.sku,
        name=row.name,
        description=row.description,
        price=Money(amount_minor=row.price_minor, currency=row.currency),
        stock=row.stock,
        attributes=dict(row.attributes),
        active=row.active,
    )


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _FILLER


def _stem(word: str) -> str:
    return word[:-1] if len(word) > _MIN_PREFIX and word.endswith("s") else word


def _score(wanted: Iterable[str], row: _ProductColumns) -> int:
    searchable = " ".join([row.name, row.description, row.sku, *row.attributes.keys(), *row.attributes.values()])
    words = _words(searchable)
    stems = {_stem(word) for word in words}
    return sum(
        1
        for word in wanted
        if _stem(word) in stems or (len(word) >= _MIN_PREFIX and any(w.startswith(word) for w in words))
    )


def get_product(engine: Engine, tenant_id: UUID, sku: str) -> ProductView | None:
    """The tenant's product `sku`, active or not, or None."""
    with Session(engine) as session:
        query = select(ProductRow).where(col(ProductRow.tenant_id) == tenant_id, col(ProductRow.sku) == sku)
        row = session.exec(query).first()
        return None if row is None else _view(row)


@dataclass(frozen=True)
class OrderSummary:
    order_id: UUID
    state: OrderState
    version: int
    conversation_id: str | None
    total: Money
    created_at: datetime
    updated_at: datetime


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)  # SQLite keeps no zone


def _summary(row: OrderRow) -> OrderSummary:
    return OrderSummary(
        order_id=row.order_id,
        state=OrderState(row.state),
        version=row.version,
        conversation_id=row.conversation_id,
        total=Money(amount_minor=row.total_minor, currency=row.currency),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def list_orders(
    engine: Engine,
    tenant_id: UUID,
    *,
    states: Iterable[OrderState] = (),
    since: datetime | None = None,
    until: datetime | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[OrderSummary]:
    """The tenant's orders newest first (by creation, then id), optionally in `states` and created in
    [since, until); `after` is the (created_at, order_id) of the last order of the previous page."""
    query = select(OrderRow).where(col(OrderRow.tenant_id) == tenant_id)
    wanted = [state.value for state in states]
    if wanted:
        query = query.where(col(OrderRow.state).in_(wanted))
    if since is not None:
        query = query.where(col(OrderRow.created_at) >= since)
    if until is not None:
        query = query.where(col(OrderRow.created_at) < until)
    if after is not None:
        at, order_id = after
        query = query.where(
            (col(OrderRow.created_at) < at) | ((col(OrderRow.created_at) == at) & (col(OrderRow.order_id) < order_id))
        )
    query = query.order_by(col(OrderRow.created_at).desc(), col(OrderRow.order_id).desc())
    query = query.limit(max(0, min(limit, MAX_ORDER_PAGE)))
    with Session(engine) as session:
        return [_summary(row) for row in session.exec(query)]


def order_summary(engine: Engine, tenant_id: UUID, order_id: UUID) -> OrderSummary | None:
    with Session(engine) as session:
        row = session.get(OrderRow, order_id)
        return None if row is None or row.tenant_id != tenant_id else _summary(row)


@dataclass(frozen=True)
class OrderDayCount:
    """Orders created on one UTC day that are now in `state`, and their total in one currency."""

    day: date
    state: OrderState
    currency: str
    orders: int
    total_minor: int


def orders_by_day(engine: Engine, tenant_id: UUID, *, since: datetime, until: datetime) -> list[OrderDayCount]:
    """Counts and totals of the orders created in [since, until), per UTC day, current state and currency."""
    query = select(OrderRow.created_at, OrderRow.state, OrderRow.currency, OrderRow.total_minor).where(
        col(OrderRow.tenant_id) == tenant_id, col(OrderRow.created_at) >= since, col(OrderRow.created_at) < until
    )
    counts: dict[tuple[date, str, str], list[int]] = {}
    with Session(engine) as session:
        for created_at, state, currency, total in session.exec(query):
            cell = counts.setdefault((_utc(created_at).date(), state, currency), [0, 0])
            cell[0] += 1
            cell[1] += total
    return [
        OrderDayCount(day=day, state=OrderState(state), currency=currency, orders=n, total_minor=total)
        for (day, state, currency), (n, total) in sorted(counts.items())
    ]


def paid_conversations(engine: Engine, tenant_id: UUID, *, since: datetime, until: datetime) -> set[str]:
    """Conversations with an order created in [since, until) that has been paid (whatever happened after)."""
    query = select(OrderRow.conversation_id).where(
        col(OrderRow.tenant_id) == tenant_id,
        col(OrderRow.created_at) >= since,
        col(OrderRow.created_at) < until,
        col(OrderRow.state).in_([state.value for state in PAID_STATES]),
        col(OrderRow.conversation_id).is_not(None),
    )
    with Session(engine) as session:
        return {conversation for conversation in session.exec(query) if conversation is not None}
