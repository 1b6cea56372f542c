"""A deterministic, offline model registered with litellm, so the demo and tests run the real call path.

It reads what a real model would: the system prompt (business, catalog and order blocks),
the conversation, and tool results; it answers with text or with real tool calls.
"""

import json
import re
import time
import uuid
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ChatCompletionMessageToolCall, Choices, Function, Message, ModelResponse, Usage

from services.agent import intent

PROVIDER = "sellmesh-offline"


def _block(system: str, name: str) -> Any:
    match = re.search(rf"<{name}>(.*?)</{name}>", system, flags=re.DOTALL)
    return json.loads(match.group(1)) if match else None


def _products(system: str) -> list[dict[str, Any]]:
    return list(_block(system, "catalog") or [])


def _catalog_line(products: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['name']} ({p['price']})" for p in products[:5])


def decide(messages: list[dict[str, Any]]) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    """Text and/or tool calls for the conversation so far."""
    system = next((str(m.get("content") or "") for m in messages if m.get("role") == "system"), "")
    products = _products(system)
    business = (_block(system, "business") or {}).get("name", "our shop")
    if messages and messages[-1].get("role") == "tool":
        return _after_tool(json.loads(messages[-1].get("content") or "{}")), []
    text = next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == "user"), "")
    refs = [
        intent.ProductRef(p["sku"], p["name"], frozenset(intent.words(p["name"] + " " + p.get("description", ""))))
        for p in products
    ]
    if intent.wants_person(text):
        return None, [("request_human", {"reason": "customer_asked"})]
    address = intent.address_in(text)
    if address:
        return None, [("set_customer_details", {"address": address})]
    product = intent.best_product(text, refs)
    if product and intent.wants_to_buy(text):
        return None, [("add_to_order", {"sku": product.sku, "quantity": intent.quantity_in(text)})]
    if intent.wants_to_pay(text):
        return None, [("request_checkout", {})]
    if intent.is_greeting(text):
        offer = _catalog_line(products)
        return (
            f"Hi! Welcome to {business}. Today we have {offer}. What would you like?"
            if offer
            else f"Hi! Welcome to {business}. How can I help?",
            [],
        )
    if product:
        match = next(p for p in products if p["sku"] == product.sku)
        stock = match.get("stock")
        availability = (
            "" if stock is None else (" It's out of stock right now." if stock == 0 else f" We have {stock} in stock.")
        )
        return f"{match['name']} costs {match['price']}.{availability} Would you like to order some?", []
    offer = _catalog_line(products)
    return (
        f"I can help you with our products: {offer}. Tell me what you'd like and how many."
        if offer
        else "I can help with orders and questions about our products."
    ), []


def _after_tool(result: dict[str, Any]) -> str:
    if not result.get("ok", False):
        return str(result.get("message") or "Sorry, I couldn't do that. A person from our team can help if you like.")
    kind = result.get("tool")
    if kind == "add_to_order":
        return (
            f"I've asked to add {result['quantity']} × {result['name']} ({result['unit_price']} each) "
            "to your order. Say 'how do I pay' when you're ready."
        )
    if kind == "request_checkout":
        return "I'm preparing your payment link; it will arrive here in a moment."
    if kind == "set_customer_details":
        return "Thanks, I've noted your delivery address."
    if kind == "request_human":
        return "I'm bringing in a person from our team. They'll answer you here shortly."
    return str(result.get("message") or "Done.")


class OfflineSalesModel(CustomLLM):
    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return self.completion(*args, **kwargs)

    def completion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        messages: list[dict[str, Any]] = kwargs.get("messages") or []
        text, calls = decide(messages)
        tool_calls = [
            ChatCompletionMessageToolCall(
                id=f"call_{uuid.uuid5(uuid.NAMESPACE_OID, json.dumps([name, args_, len(messages)])).hex[:16]}",
                type="function",
                function=Function(name=name, arguments=json.dumps(args_)),
            )
            for name, args_ in calls
        ]
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4
        completion_tokens = len(text or "") // 4 + 8 * len(calls)
        return ModelResponse(
            id=f"offline-{uuid.uuid4().hex[:12]}",
            created=int(time.time()),
            model=kwargs.get("model", PROVIDER),
            choices=[
                Choices(
                    index=0,
                    finish_reason="tool_calls" if calls else "stop",
                    message=Message(role="assistant", content=text, tool_calls=tool_calls or None),
                )
            ],
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ),
        )


def register() -> None:
    """Make `sellmesh-offline/<anything>` a litellm model; idempotent."""
    # litellm prints a banner to stdout when it cannot price a model; our logs say what matters.
    litellm.suppress_debug_info = True
    if not any(item.get("provider") == PROVIDER for item in litellm.custom_provider_map):
        litellm.custom_provider_map.append({"provider": PROVIDER, "custom_handler": OfflineSalesModel()})
        litellm.custom_provider_map = list(litellm.custom_provider_map)


async def warm_up() -> None:
    """One offline call at start-up: litellm builds its lazy types on first use (seconds), not on a customer's turn."""
    await litellm.acompletion(model=f"{PROVIDER}/warm-up", messages=[{"role": "user", "content": "hello"}])
