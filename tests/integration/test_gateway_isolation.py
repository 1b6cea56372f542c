"""Tenants are walls: every /v1 route, walked with tenant A's key against tenant B's ids, answers 404."""

import re
import typing
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi.routing import APIRoute, iter_route_contexts
from redis.asyncio import Redis
from sqlalchemy import Engine, select

from sellmesh.tables import metadata
from tests.integration.gateway_app import Published, Tenant, bearer, gateway_client, seed_tenant

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

GIFT = {"name": "Gift card", "price": {"amount_minor": 2500, "currency": "EUR"}, "stock": None}
# One valid body per request model; a route with a new model fails the walk until it gets one here.
BODIES: dict[str, dict[str, Any]] = {
    "ProductBody": GIFT,
    "ActionBody": {"reason": "asked"},
    "MemberIn": {"name": "Ana", "role": "staff"},
    "SettingsPatch": {"tone": "warm"},
    "ChannelAccountIn": {
        "channel": "messenger",
        "external_id": "page-x",
        "app_secret": "s3cret",
        "verify_token": "v",
        "access_token": "t0ken",
    },
    "ReplyBody": {"text": "hello"},
    "NoteBody": {"note": "done"},
    "AvailabilityBody": {"available": True},
}


# A SKU names a product within the caller's own catalog: PUT creates the caller's product of that name.
OWN_NAMESPACE = {("PUT", "/v1/products/{sku}")}


def path_values(other: Tenant) -> dict[str, str]:
    return {
        "order_id": str(other.order_id),
        "sku": other.sku,
        "member_id": str(other.staff_member_id),
        "key_id": str(other.staff_key_id),
        "command_id": str(other.command_id),
        "conversation_id": other.conversation_id,
        "action": "cancel",
    }


def v1_routes(app: Any) -> Iterator[tuple[str, str, APIRoute]]:
    """Every documented /v1 route of the app, however routers nest, with its full path."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or ""
        if isinstance(route, APIRoute) and route.include_in_schema and path.startswith("/v1"):
            for method in sorted(route.methods or ()):
                yield method, path, route


def body_model(route: APIRoute) -> str:
    assert route.body_field is not None
    annotation = route.body_field.field_info.annotation
    models = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    return str(models[0].__name__)


def tenant_rows(engine: Engine, tenant_id: uuid.UUID) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table that belongs to the tenant, so a test can tell that nothing changed."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            column = table.c.get("tenant_id") if table.name != "gateway_tenants" else table.c.id
            if column is not None:
                rows[table.name] = sorted(map(tuple, conn.execute(select(table).where(column == tenant_id))), key=repr)
    return rows


@pytest.fixture(scope="module")
def tenants(migrated_engine: Engine) -> tuple[Tenant, Tenant]:
    return seed_tenant(migrated_engine), seed_tenant(migrated_engine)


@pytest_asyncio.fixture
async def client(migrated_engine: Engine, redis: Redis) -> AsyncIterator[tuple[httpx.AsyncClient, Published, Any]]:
    async with gateway_client(migrated_engine, redis) as running:
        yield running


async def test_every_route_answers_404_for_another_tenants_ids_and_changes_nothing(
    migrated_engine: Engine, tenants: tuple[Tenant, Tenant], client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    mine, other = tenants
    http, published, app = client
    before = tenant_rows(migrated_engine, other.id)
    other_ids = {str(other.order_id), other.conversation_id, str(other.staff_member_id), str(other.command_id)}
    walked = 0
    for method, path, route in v1_routes(app):
        names = re.findall(r"{(\w+)}", path)
        url = path.format(**{name: path_values(other)[name] for name in names})
        body = BODIES[body_model(route)] if route.body_field is not None else None
        response = await http.request(method, url, json=body, headers=bearer(mine.owner_key))
        walked += 1
        if (method, path) in OWN_NAMESPACE:
            assert response.status_code == 202, (method, path, response.text)
        elif names:
            assert response.status_code == 404, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        else:
            # Routes naming no resource act on the caller's own tenant; they must not show the other's.
            assert response.status_code < 400, (method, path, response.text)
            assert not other_ids & set(re.findall(r"[\w.-]+", response.text)), (method, path)
    assert walked >= 25
    assert all(command.tenant_id == mine.id for _, command, _ in published.commands)
    assert tenant_rows(migrated_engine, other.id) == before


async def test_collection_reads_show_only_the_callers_tenant(
    tenants: tuple[Tenant, Tenant], client: tuple[httpx.AsyncClient, Published, Any]
) -> None:
    mine, other = tenants
    http, _, _ = client
    orders = (await http.get("/v1/orders", headers=bearer(other.owner_key))).json()["orders"]
    assert [o["order_id"] for o in orders] == [str(other.order_id)]
    conversations = (await http.get("/v1/conversations", headers=bearer(mine.owner_key))).json()["conversations"]
    assert [c["conversation_id"] for c in conversations] == [mine.conversation_id]
