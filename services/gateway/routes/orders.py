"""Orders: list and detail (lines, payments, audit) through query modules; actions as commands to orders."""

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from schemas.orders import CancelOrder, CloseOrder, FulfilOrder, OrderState, RefundOrder
from schemas.topics import ORDERS_COMMANDS
from sellmesh.db import in_thread
from services.gateway.auth import Principal, authorize
from services.gateway.bus import envelope_for
from services.gateway.commerce_models import ActionBody, AuditOut, OrderDetail, OrderOut, OrderPage, PaymentOut
from services.gateway.context import Gateway
from services.gateway.idempotency import Idempotency
from services.gateway.models import Accepted
from services.gateway.problems import ProblemError
from services.orders.query import audit_for_order, get_order, list_orders, order_summary
from services.payments.query import payments_for_order

Action = Literal["fulfil", "close", "cancel", "refund"]


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{order_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, order_id = raw.partition("|")
        parsed = datetime.fromisoformat(at)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        return parsed, uuid.UUID(order_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ProblemError(400, "the cursor is not one this API gave out", kind="bad-cursor") from None


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ProblemError(422, f"{name} needs a time zone (e.g. 2026-11-25T00:00:00Z)", kind="validation")
    return value


def _command(
    action: Action, principal: Principal, order_id: uuid.UUID, reason: str
) -> CancelOrder | CloseOrder | FulfilOrder | RefundOrder:
    fields = {**envelope_for(principal), "order_id": order_id}
    if action == "cancel":
        return CancelOrder(**fields, reason=reason)
    if action == "refund":
        return RefundOrder(**fields, reason=reason)
    return FulfilOrder(**fields) if action == "fulfil" else CloseOrder(**fields)


def router(gw: Gateway) -> APIRouter:
    api = gw.router("orders")

    @api.get("/orders", response_model=OrderPage)
    async def orders(
        principal: Annotated[Principal, gw.require("orders.read")],
        state: Annotated[list[OrderState] | None, Query(description="Repeat to allow several states")] = None,
        since: Annotated[datetime | None, Query(description="Created at or after (ISO 8601 with zone)")] = None,
        until: Annotated[datetime | None, Query(description="Created before (ISO 8601 with zone)")] = None,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> OrderPage:
        """The tenant's orders newest first; pass `next_cursor` back as `cursor` for the next page."""
        after = decode_cursor(cursor) if cursor else None
        rows = await in_thread(
            lambda: list_orders(
                gw.engine,
                principal.tenant_id,
                states=state or (),
                since=_aware(since, "since"),
                until=_aware(until, "until"),
                after=after,
                limit=limit + 1,
            )
        )
        page = rows[:limit]
        more = len(rows) > limit
        return OrderPage(
            orders=[OrderOut.model_validate(row, from_attributes=True) for row in page],
            next_cursor=encode_cursor(page[-1].created_at, page[-1].order_id) if more else None,
        )

    @api.get("/orders/{order_id}", response_model=OrderDetail)
    async def order(order_id: uuid.UUID, principal: Annotated[Principal, gw.require("orders.read")]) -> OrderDetail:
        """The order with its lines, payment attempts and audit trail (oldest first)."""
        tenant = principal.tenant_id
        summary = await in_thread(order_summary, gw.engine, tenant, order_id)
        snapshot = await in_thread(get_order, gw.engine, tenant, order_id)
        if summary is None or snapshot is None:
            # Another tenant's order is indistinguishable from a missing one.
            raise ProblemError(404, "order not found")
        payments = await in_thread(payments_for_order, gw.engine, tenant, order_id)
        audit = await in_thread(audit_for_order, gw.engine, tenant, order_id)
        return OrderDetail(
            **OrderOut.model_validate(summary, from_attributes=True).model_dump(),
            lines=list(snapshot.lines),
            customer=snapshot.customer,
            payments=[PaymentOut.model_validate(p, from_attributes=True) for p in payments],
            audit=[AuditOut.model_validate(a, from_attributes=True) for a in audit],
        )

    @api.post("/orders/{order_id}/{action}", response_model=Accepted, status_code=202)
    async def order_action(
        order_id: uuid.UUID,
        action: Action,
        principal: Annotated[Principal, Depends(gw.auth.principal)],
        body: ActionBody | None = None,
        idempotency: Idempotency = None,
    ) -> Accepted:
        """Ask orders to fulfil, close, cancel or refund; GET /v1/commands/{command_id} tells what it decided."""
        authorize(principal, f"orders.{action}")
        if await in_thread(order_summary, gw.engine, principal.tenant_id, order_id) is None:
            raise ProblemError(404, "order not found")
        command = _command(action, principal, order_id, body.reason if body else "")
        command_id = await gw.bus.send(
            ORDERS_COMMANDS, command, key=str(order_id), target=str(order_id), idempotency=idempotency
        )
        return Accepted(command_id=command_id)

    return api
