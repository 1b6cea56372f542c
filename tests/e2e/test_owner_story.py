"""An owner's day through /v1 on the running mesh: connect WhatsApp, stock the catalog, watch a customer pay,
fulfil the order, then read its audit trail and the analytics."""

import asyncio
import json
import re
import secrets
import uuid
from typing import Any

import pytest

from sellmesh.contract import ROOT
from sellmesh.mesh import Mesh
from services.gateway.admin import create_tenant
from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import sign
from tests.e2e.conftest import Shop, eventually, new_customer

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="package")]

SESSION_IN_LINK = re.compile(r"/sandbox/stripe/pay/(cs_test_[0-9a-f]+)")
BEANS = {
    "name": "Espresso beans 250g",
    "description": "dark roast",
    "price": {"amount_minor": 1250, "currency": "EUR"},
    "stock": 40,
}
MUG = {"name": "Ceramic mug", "description": "stoneware", "price": {"amount_minor": 900, "currency": "EUR"}, "stock": 5}


class Owner:
    """The owner's side: the API with their key."""

    def __init__(self, shop: Shop, key: str) -> None:
        self.shop = shop
        self.headers = {"authorization": f"Bearer {key}"}

    async def call(self, method: str, path: str, json: Any = None, **params: Any) -> Any:
        response = await self.shop.http.request(
            method, f"{self.shop.base_url}/v1{path}", json=json, params=params, headers=self.headers
        )
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        assert response.headers["x-request-id"]
        return response.json() if response.content else None

    async def settled(self, command_id: str) -> dict[str, Any]:
        outcome: dict[str, Any] = await eventually(
            lambda: self.call("GET", f"/commands/{command_id}"), lambda o: o["status"] != "pending", within=15
        )
        return outcome


async def test_an_owner_connects_whatsapp_sells_fulfils_and_reads_the_story(shop: Shop, mesh: Mesh) -> None:
    tenant_id, key = await asyncio.to_thread(create_tenant, shop.engine, name=f"Story Roasters {uuid.uuid4().hex[:4]}")
    owner = Owner(shop, key)
    phone_number_id, app_secret = str(uuid.uuid4().int)[:15], secrets.token_hex(16)
    account = await owner.call(
        "POST",
        "/channel-accounts",
        {
            "channel": "whatsapp",
            "external_id": phone_number_id,
            "display_name": "Shop line",
            "app_secret": app_secret,
            "verify_token": secrets.token_urlsafe(8),
            "access_token": "EAA-story-token",
        },
    )
    assert account["channel"] == "whatsapp" and "app_secret" not in account
    for sku, product in (("ESP-250", BEANS), ("MUG-01", MUG)):
        accepted = await owner.call("PUT", f"/products/{sku}", product)
        assert (await owner.settled(accepted["command_id"]))["status"] == "accepted"

    customer = new_customer()

    async def say(text: str) -> None:
        body = encode(whatsapp_text(phone_number_id=phone_number_id, customer=customer, text=text))
        headers = {"content-type": "application/json", "x-hub-signature-256": sign(body, app_secret)}
        response = await shop.http.post(f"{shop.base_url}/webhooks/meta", content=body, headers=headers)
        assert response.status_code == 200, response.text

    await say("I want two espresso beans")
    await shop.wait_for_replies(customer, 1, within=15)
    await say("how do I pay?")
    replies = await shop.wait_for_replies(customer, 3, within=20)
    link = next(SESSION_IN_LINK.search(r["text"]) for r in replies if SESSION_IN_LINK.search(r["text"]))
    assert link is not None
    paid = await shop.http.post(f"{shop.base_url}/sandbox/stripe/_test/sessions/{link.group(1)}/pay")
    assert paid.status_code == 200

    page = await eventually(lambda: owner.call("GET", "/orders", state="paid"), lambda p: p["orders"], within=20)
    [order] = page["orders"]
    fulfil = await owner.call("POST", f"/orders/{order['order_id']}/fulfil")
    outcome = await owner.settled(fulfil["command_id"])
    assert (outcome["status"], outcome["detail"]) == ("accepted", "fulfilled")

    detail = await owner.call("GET", f"/orders/{order['order_id']}")
    assert detail["state"] == "fulfilled"
    assert [(line["sku"], line["quantity"]) for line in detail["lines"]] == [("ESP-250", 2)]
    assert [p["status"] for p in detail["payments"]] == ["paid"]
    assert detail["payments"][0]["amount"] == {"amount_minor": 2500, "currency": "EUR"}
    me = await owner.call("GET", "/me")
    trail = [(a["actor_kind"], a["command_type"], a["outcome"]) for a in detail["audit"]]
    assert ("owner", "fulfil", "accepted") in trail and ("ai", "create_draft", "accepted") in trail
    assert any(a["actor_id"] == me["member_id"] for a in detail["audit"] if a["command_type"] == "fulfil")

    conversations = (await owner.call("GET", "/conversations"))["conversations"]
    assert [c["conversation_id"] for c in conversations] == [detail["conversation_id"]]
    messages = await owner.call("GET", f"/conversations/{detail['conversation_id']}/messages")
    assert "I want two espresso beans" in [m["text"] for m in messages["messages"]]

    analytics = await owner.call("GET", "/analytics")
    totals = analytics["totals"]
    assert totals["conversations"] == 1 and totals["paid_conversations"] == 1 and analytics["conversion"] == 1.0
    assert totals["ai_replies"] >= 2 and totals["ai_cost_usd"] >= 0
    assert {(r["state"], r["orders"], r["total_minor"]) for r in totals["orders"]} == {("fulfilled", 1, 2500)}
    assert tenant_id != shop.tenant_id and mesh.ctx is not None

    served = await shop.http.get(f"{shop.base_url}/openapi.json")
    assert served.json() == json.loads((ROOT / "docs" / "openapi.json").read_text())  # the committed one is live


async def test_an_owner_takes_over_a_conversation_replies_and_hands_it_back(shop: Shop) -> None:
    owner = Owner(shop, shop.owner_key)
    customer = new_customer()
    await shop.say(customer, "hello, do you have mugs?")
    first = await shop.wait_for_replies(customer, 1, within=15)
    conversations = await eventually(
        lambda: owner.call("GET", "/conversations"), lambda page: page["conversations"], within=15
    )
    [conversation] = [c for c in conversations["conversations"] if c["customer_id"] == customer]
    path = f"/conversations/{conversation['conversation_id']}"

    taken = await owner.call("POST", f"{path}/take-over")
    assert (await owner.settled(taken["request_command_id"]))["event_type"] == "opened"
    assert (await owner.settled(taken["assign_command_id"]))["status"] == "accepted"
    inbox = (await owner.call("GET", "/inbox"))["tickets"]
    me = await owner.call("GET", "/me")
    assert [t["assigned_to"] for t in inbox if t["conversation_id"] == conversation["conversation_id"]] == [
        me["member_id"]
    ]

    replied = await owner.call("POST", f"{path}/reply", {"text": "Hi, this is the owner. Yes, blue ones too."})
    assert (await owner.settled(replied["command_id"]))["status"] == "accepted"
    got = await shop.wait_for_replies(customer, len(first) + 1, within=15)
    assert got[-1]["text"] == "Hi, this is the owner. Yes, blue ones too."

    [seen] = [t["ticket_id"] for t in inbox if t["conversation_id"] == conversation["conversation_id"]]
    resolved = await owner.call("POST", f"{path}/resolve", {"note": "answered about mugs", "ticket_id": seen})
    assert (await owner.settled(resolved["command_id"]))["event_type"] == "resolved"
    again = await owner.call("POST", f"{path}/resolve", {"note": "twice"})
    outcome = await owner.settled(again["command_id"])
    assert outcome["status"] == "rejected" and outcome["reason"] in {"ticket_closed", "no_open_ticket"}

    # A second person's resolve of the ticket they saw, after it closed and another opened: refused, and the new
    # ticket stays open (its customer keeps the person).
    taken = await owner.call("POST", f"{path}/take-over")
    assert (await owner.settled(taken["request_command_id"]))["event_type"] == "opened"
    late = await owner.call("POST", f"{path}/resolve", {"note": "done", "ticket_id": seen})
    outcome = await owner.settled(late["command_id"])
    assert (outcome["status"], outcome["reason"]) == ("rejected", "ticket_closed")
    inbox = (await owner.call("GET", "/inbox"))["tickets"]
    [still_open] = [t["ticket_id"] for t in inbox if t["conversation_id"] == conversation["conversation_id"]]
    assert still_open != seen
