"""The read-only query module other services use to see a tenant's catalog and orders; nothing here writes."""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.envelope import Money
from schemas.orders import OrderSnapshot
from services.orders.tables import LineRow, OrderRow, ProductRow, order_from_rows

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
    products = _active_products(engine, tenant_id)
    wanted = _words(text)
    if not wanted:
        return [_view(row) for row in products[:limit]]
    scored = [(_score(wanted, row), row) for row in products]
    ranked = sorted((pair for pair in scored if pair[0]), key=lambda pair: -pair[0])
    return [_view(row) for _, row in ranked[:limit]]


def list_products(engine: Engine, tenant_id: UUID) -> list[ProductView]:
    """Every active product of the tenant, by name."""
    return [_view(row) for row in _active_products(engine, tenant_id)]


def get_order(engine: Engine, tenant_id: UUID, order_id: UUID) -> OrderSnapshot | None:
    """The order as it stands, or None when it does not exist or belongs to another tenant."""
    with Session(engine) as session:
        row = session.get(OrderRow, order_id)
        if row is None or row.tenant_id != tenant_id:
            return None
        return _snapshot(session, row)


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


def _snapshot(session: Session, row: OrderRow) -> OrderSnapshot:
    lines = session.exec(select(LineRow).where(col(LineRow.order_id) == row.order_id))
    return order_from_rows(row, lines).snapshot()


def _active_products(engine: Engine, tenant_id: UUID) -> list[ProductRow]:
    with Session(engine) as session:
        query = (
            select(ProductRow)
            .where(col(ProductRow.tenant_id) == tenant_id, col(ProductRow.active).is_(True))
            .order_by(col(ProductRow.name), col(ProductRow.sku))
        )
        return list(session.exec(query))


def _view(row: ProductRow) -> ProductView:
    return ProductView(
        sku=row.sku,
        name=row.name,
        description=row.description,
        price=Money(amount_minor=row.price_minor, currency=row.currency),
        stock=row.stock,
        attributes=dict(row.attributes),
    )


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _FILLER


def _stem(word: str) -> str:
    return word[:-1] if len(word) > _MIN_PREFIX and word.endswith("s") else word


def _score(wanted: Iterable[str], row: ProductRow) -> int:
    searchable = " ".join([row.name, row.description, row.sku, *row.attributes.keys(), *row.attributes.values()])
    words = _words(searchable)
    stems = {_stem(word) for word in words}
    return sum(
        1
        for word in wanted
        if _stem(word) in stems or (len(word) >= _MIN_PREFIX and any(w.startswith(word) for w in words))
    )
