"""The catalog: read through orders.query; every change is an UpsertProduct command that orders decides and audits."""

from typing import Annotated

from fastapi import APIRouter, Path

from schemas.orders import ProductFields, UpsertProduct
from schemas.topics import ORDERS_COMMANDS
from sellmesh.db import in_thread
from services.gateway.auth import Principal, authorize
from services.gateway.bus import envelope_for
from services.gateway.commerce_models import Product, ProductBody, Products
from services.gateway.context import Gateway
from services.gateway.idempotency import Idempotency, Idempotent
from services.gateway.models import Accepted
from services.gateway.problems import ProblemError
from services.orders.query import ProductView, get_product, list_products

SkuPath = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


def _product(view: ProductView) -> Product:
    return Product(
        sku=view.sku,
        name=view.name,
        description=view.description,
        attributes=dict(view.attributes),
        price=view.price,
        stock=view.stock,
        active=view.active,
    )


def router(gw: Gateway) -> APIRouter:
    api = gw.router("catalog")

    async def upsert(
        principal: Principal, sku: str, fields: ProductFields, idempotency: Idempotent | None, keep_stock: bool = False
    ) -> Accepted:
        command = UpsertProduct(**envelope_for(principal), sku=sku, keep_stock=keep_stock, **dict(fields))
        command_id = await gw.bus.send(ORDERS_COMMANDS, command, key=sku, target=sku, idempotency=idempotency)
        return Accepted(command_id=command_id)

    @api.get("/products", response_model=Products)
    async def products(principal: Annotated[Principal, gw.require("catalog.read")]) -> Products:
        """The tenant's active products, by name."""
        rows = await in_thread(list_products, gw.engine, principal.tenant_id)
        return Products(products=[_product(row) for row in rows])

    @api.get("/products/{sku}", response_model=Product)
    async def product(sku: SkuPath, principal: Annotated[Principal, gw.require("catalog.read")]) -> Product:
        found = await in_thread(get_product, gw.engine, principal.tenant_id, sku)
        if found is None:
            raise ProblemError(404, "product not found")
        return _product(found)

    @api.put("/products/{sku}", response_model=Accepted, status_code=202)
    async def put_product(
        sku: SkuPath,
        body: ProductBody,
        principal: Annotated[Principal, gw.require("catalog.write")],
        idempotency: Idempotency = None,
    ) -> Accepted:
        """Create or replace the product; orders decides, and GET /v1/commands/{id} tells the outcome.

        `stock`, when given, is the units left to sell from when orders applies it, beyond what pending orders
        already hold; left out, an existing product keeps its own. Taking a product off sale or putting it back
        (`active`) is the owner's, as DELETE is."""
        found = await in_thread(get_product, gw.engine, principal.tenant_id, sku)
        if found is not None and found.active != body.active:
            authorize(principal, "catalog.deactivate")
        return await upsert(principal, sku, body, idempotency, keep_stock=not body.restates_stock)

    @api.delete("/products/{sku}", response_model=Accepted, status_code=202)
    async def deactivate(
        sku: SkuPath,
        principal: Annotated[Principal, gw.require("catalog.deactivate")],
        idempotency: Idempotency = None,
    ) -> Accepted:
        """Take the product off sale (it stays in past orders and the audit trail)."""
        found = await in_thread(get_product, gw.engine, principal.tenant_id, sku)
        if found is None:
            raise ProblemError(404, "product not found")
        fields = ProductFields(
            name=found.name,
            description=found.description,
            attributes=dict(found.attributes),
            price=found.price,
            stock=found.stock,
            active=False,
        )
        # The stock read above may be gone by the time orders applies this: reservations made since stay.
        return await upsert(principal, sku, fields, idempotency, keep_stock=True)

    return api
