"""The owners' API on the running mesh: keys, tenant walls, and writes answered as accepted commands."""

import asyncio
import uuid
from typing import Any

import pytest

from services.orders.query import get_order
from tests.e2e.conftest import Shop, eventually, new_customer, seed_shop

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="package")]


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def an_order(shop: Shop) -> str:
    """A customer of `shop` starts an order; returns the conversation id."""
    from sellmesh.service import derived_id
    from services.gateway.query import find_channel_account

    customer = new_customer()
    await shop.say(customer, "I want one ceramic mug")
    await shop.wait_for_replies(customer, 1)
    account = find_channel_account(shop.engine, channel="whatsapp", external_id=shop.phone_number_id)
    assert account is not None
    return str(derived_id("conversation", shop.tenant_id, account.id, customer))


async def test_requests_without_a_valid_key_are_refused(shop: Shop) -> None:
    for headers in (
        {},
        {"authorization": "Basic abc"},
        bearer("sm_nope_nope"),
        bearer("x" * 500),
        bearer(shop.owner_key + "x"),
    ):
        response = await shop.http.get(f"{shop.base_url}/v1/me", headers=headers)
        assert response.status_code == 401


async def test_owner_sees_own_tenant_and_catalog(shop: Shop) -> None:
    me = (await shop.http.get(f"{shop.base_url}/v1/me", headers=bearer(shop.owner_key))).json()
    assert me["tenant_id"] == str(shop.tenant_id)
    assert me["role"] == "owner"
    products = (await shop.http.get(f"{shop.base_url}/v1/products", headers=bearer(shop.owner_key))).json()["products"]
    assert {p["sku"] for p in products} == {"ESP-250", "MUG-01"}
    assert "app_secret" not in str(me) and shop.app_secret not in str(products)


async def test_another_tenants_order_is_not_found_for_reads_and_actions(shop: Shop, mesh: object) -> None:
    from services.agent.memory import current_order_id

    conversation = await an_order(shop)
    redis = mesh.ctx.redis  # type: ignore[attr-defined]
    order_id = await eventually(lambda: current_order_id(redis, shop.tenant_id, conversation), lambda o: o is not None)

    async def fetch() -> object:
        return await asyncio.to_thread(get_order, shop.engine, shop.tenant_id, order_id)

    await eventually(fetch, lambda o: o is not None)
    _, other_key, *_ = await asyncio.to_thread(seed_shop, shop.engine)
    url = f"{shop.base_url}/v1/orders/{order_id}"
    assert (await shop.http.get(url, headers=bearer(shop.owner_key))).status_code == 200
    assert (await shop.http.get(url, headers=bearer(other_key))).status_code == 404
    assert (await shop.http.post(f"{url}/cancel", headers=bearer(other_key))).status_code == 404
    accepted = await shop.http.post(f"{url}/cancel", headers=bearer(shop.owner_key))
    assert accepted.status_code == 202
    uuid.UUID(accepted.json()["command_id"])


async def test_malformed_ids_and_unknown_actions_get_clear_4xx(shop: Shop) -> None:
    headers = bearer(shop.owner_key)
    assert (await shop.http.get(f"{shop.base_url}/v1/orders/not-a-uuid", headers=headers)).status_code == 422
    assert (
        await shop.http.post(f"{shop.base_url}/v1/orders/{uuid.uuid4()}/explode", headers=headers)
    ).status_code == 422
    assert (await shop.http.get(f"{shop.base_url}/v1/orders/{uuid.uuid4()}", headers=headers)).status_code == 404


GIFT = {
    "name": "Gift card",
    "description": "any amount",
    "attributes": {"kind": "digital"},
    "price": {"amount_minor": 2500, "currency": "EUR"},
    "stock": None,
}


async def test_an_owner_puts_a_product_and_orders_changes_the_catalog_and_audits_it(shop: Shop) -> None:
    from services.orders.query import audit_for_tenant

    headers = bearer(shop.owner_key)
    response = await shop.http.put(f"{shop.base_url}/v1/products/GIFT-25", json=GIFT, headers=headers)
    assert response.status_code == 202
    command_id = uuid.UUID(response.json()["command_id"])

    async def products() -> list[dict[str, object]]:
        listed = await shop.http.get(f"{shop.base_url}/v1/products", headers=headers)
        found: list[dict[str, object]] = listed.json()["products"]
        return found

    listed = await eventually(products, lambda ps: any(p["sku"] == "GIFT-25" for p in ps))
    gift = next(p for p in listed if p["sku"] == "GIFT-25")
    assert (gift["price"], gift["stock"]) == (GIFT["price"], None)
    entries = await asyncio.to_thread(audit_for_tenant, shop.engine, shop.tenant_id, limit=20)
    [entry] = [e for e in entries if e.command_id == command_id]
    assert (entry.sku, entry.change, entry.actor_kind.value) == ("GIFT-25", "product_created", "owner")


@pytest.mark.parametrize(
    ("sku", "body"),
    [
        ("GIFT-25", {**GIFT, "stock": -1}),
        ("GIFT-25", {key: value for key, value in GIFT.items() if key != "price"}),
        ("GIFT-25", {**GIFT, "price": {"amount_minor": 1, "currency": "eur"}}),
        ("GIFT-25", {**GIFT, "surprise": 1}),
        ("GIFT-25", {**GIFT, "attributes": {f"k{i}": "v" for i in range(40)}}),
        ("bad sku!", GIFT),
        ("x" * 65, GIFT),
    ],
    ids=["negative-stock", "no-price", "bad-currency", "extra-field", "too-many-attributes", "bad-sku", "long-sku"],
)
async def test_a_malformed_product_gets_422_and_publishes_nothing(
    shop: Shop, sku: str, body: dict[str, object]
) -> None:
    response = await shop.http.put(f"{shop.base_url}/v1/products/{sku}", json=body, headers=bearer(shop.owner_key))
    assert response.status_code == 422


async def test_putting_a_product_needs_a_valid_key(shop: Shop) -> None:
    response = await shop.http.put(f"{shop.base_url}/v1/products/GIFT-25", json=GIFT)
    assert response.status_code == 401


async def test_owner_sees_ai_quota_and_model_usage_after_a_conversation(shop: Shop) -> None:
    customer = new_customer()
    await shop.say(customer, "hello")
    await shop.wait_for_replies(customer, 1)

    async def fetch() -> dict[str, Any]:
        response = await shop.http.get(f"{shop.base_url}/v1/usage", headers=bearer(shop.owner_key))
        assert response.status_code == 200
        body: dict[str, Any] = response.json()
        return body

    body = await eventually(fetch, lambda b: b["model"]["ai_turns"] >= 1)
    assert body["quota"]["plan"] == "free"
    assert body["quota"]["ai_replies_this_month"] >= 1
    assert body["model"]["prompt_tokens"] > 0
    assert (await shop.http.get(f"{shop.base_url}/v1/usage")).status_code == 401


async def test_inbox_shows_open_handoffs_with_messages_and_stays_within_the_tenant(shop: Shop) -> None:
    customer = new_customer()
    await shop.say(customer, "can I talk to a person?")
    await shop.wait_for_replies(customer, 1)
    await shop.say(customer, "hello? still there?")

    async def fetch() -> list[dict[str, Any]]:
        response = await shop.http.get(f"{shop.base_url}/v1/inbox", headers=bearer(shop.owner_key))
        assert response.status_code == 200
        tickets: list[dict[str, Any]] = response.json()["tickets"]
        return tickets

    tickets = await eventually(fetch, lambda t: len(t) == 1 and t[0]["unread"] >= 2)
    [ticket] = tickets
    assert ticket["reason"] == "customer_asked"
    texts = [m["text"] for m in ticket["messages"]]
    assert "can I talk to a person?" in texts and "hello? still there?" in texts
    assert any(m["direction"] == "out" for m in ticket["messages"])
    assert ticket["waiting_seconds"] >= 0
    _, other_key, *_ = await asyncio.to_thread(seed_shop, shop.engine)
    other = await shop.http.get(f"{shop.base_url}/v1/inbox", headers=bearer(other_key))
    assert other.json() == {"tickets": []}
