"""The /v1 routes: reads through the services' query modules, writes by publishing commands."""

import dataclasses
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import JSONResponse

from schemas.envelope import Actor, ActorKind
from schemas.orders import CancelOrder, CloseOrder, FulfilOrder, ProductFields, RefundOrder, UpsertProduct
from schemas.topics import ORDERS_COMMANDS
from sellmesh.broker import publish
from sellmesh.db import in_thread
from sellmesh.service import MeshContext, new_id, now
from services.agent.query import quota_usage, usage_totals
from services.gateway.auth import Principal, principal_dependency
from services.gateway.query import tenant_name, tenant_training
from services.handoff.query import open_inbox
from services.orders.query import get_order, list_products

ACTIONS = {"fulfil": FulfilOrder, "close": CloseOrder, "cancel": CancelOrder, "refund": RefundOrder}
SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


def api_router(ctx: MeshContext) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["gateway"])
    auth = principal_dependency(ctx.engine)

    @router.get("/me")
    async def me(principal: Principal = auth) -> dict[str, Any]:
        name = await in_thread(tenant_name, ctx.engine, principal.tenant_id)
        return {"tenant_id": str(principal.tenant_id), "tenant_name": name, "role": principal.role}

    @router.get("/usage")
    async def usage(principal: Principal = auth) -> dict[str, Any]:
        """The plan's AI quota this month and minute, and model tokens and cost since the month began."""
        at = now()
        training = await in_thread(tenant_training, ctx.engine, principal.tenant_id)
        month_start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        totals = await in_thread(lambda: usage_totals(ctx.engine, principal.tenant_id, since=month_start))
        return {"quota": await quota_usage(ctx.redis, principal.tenant_id, training, at), "model": totals}

    @router.get("/inbox")
    async def inbox(principal: Principal = auth) -> dict[str, Any]:
        """Open handoff tickets with their recent messages, unread counts and waiting time."""
        entries = await in_thread(lambda: open_inbox(ctx.engine, principal.tenant_id, now=now()))
        return {"tickets": [dataclasses.asdict(entry) for entry in entries]}

    @router.get("/products")
    async def products(principal: Principal = auth) -> dict[str, Any]:
        rows = await in_thread(list_products, ctx.engine, principal.tenant_id)
        return {
            "products": [
                {
                    "sku": p.sku,
                    "name": p.name,
                    "description": p.description,
                    "price": p.price.model_dump(),
                    "stock": p.stock,
                }
                for p in rows
            ]
        }

    @router.get("/orders/{order_id}")
    async def order(order_id: uuid.UUID, principal: Principal = auth) -> dict[str, Any]:
        snapshot = await in_thread(get_order, ctx.engine, principal.tenant_id, order_id)
        if snapshot is None:
            # Another tenant's order is indistinguishable from a missing one.
            raise HTTPException(404, "order not found")
        return snapshot.model_dump(mode="json")

    @router.post("/orders/{order_id}/{action}", status_code=202)
    async def order_action(
        order_id: uuid.UUID,
        action: Literal["fulfil", "close", "cancel", "refund"],
        principal: Principal = auth,
    ) -> JSONResponse:
        snapshot = await in_thread(get_order, ctx.engine, principal.tenant_id, order_id)
        if snapshot is None:
            raise HTTPException(404, "order not found")
        command_id = new_id()
        command = ACTIONS[action](
            event_id=command_id,
            tenant_id=principal.tenant_id,
            correlation_id=command_id,
            occurred_at=now(),
            producer="gateway",
            order_id=order_id,
            actor=Actor(kind=ActorKind(principal.role), id=str(principal.key_id)),
        )
        await publish(ctx.broker, ORDERS_COMMANDS, command, key=str(order_id))
        return JSONResponse({"command_id": str(command_id), "status": "accepted"}, status_code=202)

    @router.put("/products/{sku}", status_code=202)
    async def put_product(sku: SkuPath, body: ProductFields, principal: Principal = auth) -> JSONResponse:
        # Orders decides (owners and staff only) and audits it; the answer here is only "queued".
        command_id = new_id()
        command = UpsertProduct(
            event_id=command_id,
            tenant_id=principal.tenant_id,
            correlation_id=command_id,
            occurred_at=now(),
            producer="gateway",
            sku=sku,
            actor=Actor(kind=ActorKind(principal.role), id=str(principal.key_id)),
            **dict(body),
        )
        await publish(ctx.broker, ORDERS_COMMANDS, command, key=sku)
        return JSONResponse({"command_id": str(command_id), "status": "accepted"}, status_code=202)

    return router
