"""Response and request bodies of the catalog, orders, command outcomes and analytics."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, Field, StringConstraints

from schemas.envelope import NO_NUL, Money
from schemas.orders import CustomerDetails, OrderLine, OrderState, ProductFields, Stock
from services.gateway.models import Body


class Product(BaseModel):
    sku: str
    name: str
    description: str
    attributes: dict[str, str]
    price: Money
    stock: int | None
    active: bool


class Products(BaseModel):
    products: list[Product]


class OrderOut(BaseModel):
    order_id: UUID
    state: OrderState
    version: int
    conversation_id: str | None
    total: Money
    created_at: datetime
    updated_at: datetime


class OrderPage(BaseModel):
    orders: list[OrderOut]
    next_cursor: str | None


class AuditOut(BaseModel):
    id: int
    actor_kind: str
    actor_id: str
    command_type: str
    command_id: UUID
    outcome: str
    change: str | None
    from_state: str | None
    to_state: str | None
    reason: str | None
    detail: str
    at: datetime


class PaymentChangeOut(BaseModel):
    before: str
    after: str
    source: str
    detail: str
    at: datetime


class PaymentOut(BaseModel):
    attempt: int
    checkout_session_id: str
    amount: Money
    status: str
    created_at: datetime
    expires_at: datetime
    changes: list[PaymentChangeOut]


class OrderDetail(OrderOut):
    lines: list[OrderLine]
    customer: CustomerDetails
    payments: list[PaymentOut]
    audit: list[AuditOut]


class ActionBody(Body):
    reason: Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)] = ""


class ProductBody(ProductFields):
    """A product as owners and staff put it. Without `stock`, an existing product keeps the units it has left to
    sell as orders holds them (a price or name edit must not restate a figure read before reservations took
    some); a product this request makes then starts with none, never unlimited by omission."""

    stock: Stock | None = 0

    @property
    def restates_stock(self) -> bool:
        return "stock" in self.model_fields_set


class Outcome(BaseModel):
    command_id: UUID
    command_type: str
    target: str
    status: Literal["pending", "accepted", "rejected"]
    event_type: str | None
    reason: str | None
    detail: str
    created_at: datetime
    decided_at: datetime | None


class Revenue(BaseModel):
    state: OrderState
    currency: str
    orders: int
    total_minor: int


class DayStats(BaseModel):
    day: str
    conversations: int
    ai_replies: int
    handoffs: dict[str, int]
    orders: list[Revenue]
    paid_conversations: int
    ai_cost_usd: float


class Analytics(BaseModel):
    since: str
    until: str
    days: list[DayStats]
    totals: DayStats
    conversion: float = Field(description="Conversations that led to a paid order / conversations started")
