"""The offline model's decisions from the real system prompt, and its litellm-shaped response."""

import json
from typing import Any

import pytest
from litellm.types.utils import ModelResponse

from services.agent.offline_model import OfflineSalesModel, decide
from services.agent.prompt import system_prompt

CATALOG = [
    {
        "sku": "ESP-1",
        "name": "Espresso beans",
        "description": "Dark roast coffee, 1 kg",
        "price": "12.50 EUR",
        "stock": 4,
    },
    {"sku": "MUG-1", "name": "Ceramic mug", "description": "Holds 300 ml", "price": "8.00 EUR", "stock": 0},
    {"sku": "TS-1", "name": "T-shirt", "description": "Cotton tee", "price": "15.00 EUR", "stock": None},
]
# litellm's lazily built pydantic models warn about TypedDict ReadOnly items on first use;
# pytest runs with warnings as errors, so the tests that build a ModelResponse ignore just that one.
LITELLM_READONLY_WARNING = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning")
SYSTEM = system_prompt(business="Bean There", training={"tone": "friendly"}, products=CATALOG, order=None)


def _chat(*user_texts: str, system: str = SYSTEM) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for text in user_texts:
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]
    return messages[:-1]


def _after(result: dict[str, Any]) -> list[dict[str, Any]]:
    call = {"id": "call_1", "type": "function", "function": {"name": str(result.get("tool")), "arguments": "{}"}}
    return [
        *_chat("I want two espresso beans"),
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(result)},
    ]


def test_a_greeting_names_the_business_and_lists_products_with_prices() -> None:
    text, calls = decide(_chat("hi"))
    assert calls == []
    assert text is not None
    assert "Bean There" in text
    assert "Espresso beans (12.50 EUR)" in text and "Ceramic mug (8.00 EUR)" in text and "T-shirt (15.00 EUR)" in text


def test_a_greeting_with_an_empty_catalog_offers_help() -> None:
    system = system_prompt(business="Bean There", training={}, products=[], order=None)
    text, calls = decide(_chat("hello", system=system))
    assert (text, calls) == ("Hi! Welcome to Bean There. How can I help?", [])


def test_without_a_system_prompt_the_business_is_our_shop() -> None:
    text, _ = decide([{"role": "user", "content": "hi"}])
    assert text is not None and "our shop" in text


def test_wanting_two_of_a_product_calls_add_to_order_with_its_sku_and_quantity() -> None:
    assert decide(_chat("I want two espresso beans")) == (None, [("add_to_order", {"sku": "ESP-1", "quantity": 2})])


def test_plural_product_names_still_find_the_product() -> None:
    assert decide(_chat("I'd like 3 t-shirts")) == (None, [("add_to_order", {"sku": "TS-1", "quantity": 3})])


def test_asking_how_to_pay_requests_checkout() -> None:
    assert decide(_chat("how do I pay")) == (None, [("request_checkout", {})])


def test_giving_an_address_sets_customer_details() -> None:
    assert decide(_chat("my address is 1 Main St")) == (None, [("set_customer_details", {"address": "1 Main St"})])


def test_asking_for_a_person_requests_a_human() -> None:
    assert decide(_chat("can I talk to a person")) == (None, [("request_human", {"reason": "customer_asked"})])


def test_a_price_question_answers_with_the_catalog_price_and_stock() -> None:
    text, calls = decide(_chat("how much are the espresso beans?"))
    assert calls == []
    assert text == "Espresso beans costs 12.50 EUR. We have 4 in stock. Would you like to order some?"


def test_a_price_question_about_an_out_of_stock_product_says_so() -> None:
    text, _ = decide(_chat("how much is the ceramic mug"))
    assert text is not None and "8.00 EUR" in text and "out of stock" in text


def test_a_product_without_stock_information_says_nothing_about_stock() -> None:
    text, _ = decide(_chat("t-shirt price?"))
    assert text == "T-shirt costs 15.00 EUR. Would you like to order some?"


def test_an_unrelated_message_offers_the_catalog() -> None:
    text, calls = decide(_chat("what's the weather tomorrow"))
    assert calls == []
    assert text is not None and text.startswith("I can help you with our products: Espresso beans (12.50 EUR)")


def test_only_the_latest_customer_message_decides() -> None:
    assert decide(_chat("can I talk to a person", "how do I pay")) == (None, [("request_checkout", {})])


def test_after_add_to_order_it_says_it_asked_not_that_it_was_done() -> None:
    result = {
        "ok": True,
        "tool": "add_to_order",
        "sku": "ESP-1",
        "quantity": 2,
        "name": "Espresso beans",
        "unit_price": "12.50 EUR",
    }
    text, calls = decide(_after(result))
    assert calls == []
    assert text is not None
    assert text.startswith("I've asked to add 2 × Espresso beans (12.50 EUR each)")
    assert "I've added" not in text


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("request_checkout", "I'm preparing your payment link; it will arrive here in a moment."),
        ("set_customer_details", "Thanks, I've noted your delivery address."),
        ("request_human", "I'm bringing in a person from our team. They'll answer you here shortly."),
        ("something_else", "Done."),
    ],
)
def test_after_other_tools_it_confirms_each_in_its_own_words(tool: str, expected: str) -> None:
    assert decide(_after({"ok": True, "tool": tool})) == (expected, [])


def test_a_failed_tool_result_passes_on_its_message() -> None:
    result = {"ok": False, "tool": "add_to_order", "message": "Sorry, we don't have that product."}
    assert decide(_after(result)) == ("Sorry, we don't have that product.", [])


def test_a_failed_tool_result_without_message_apologises_and_offers_a_person() -> None:
    text, _ = decide(_after({"ok": False, "tool": "request_checkout"}))
    assert text is not None and text.startswith("Sorry, I couldn't do that.") and "person" in text


@LITELLM_READONLY_WARNING
def test_completion_returns_a_model_response_with_json_tool_arguments() -> None:
    response = OfflineSalesModel().completion(
        messages=_chat("I want two espresso beans"), model="sellmesh-offline/demo"
    )
    assert isinstance(response, ModelResponse)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "add_to_order"
    assert json.loads(call.function.arguments) == {"sku": "ESP-1", "quantity": 2}
    assert response.model == "sellmesh-offline/demo"
    usage = response.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@LITELLM_READONLY_WARNING
def test_completion_ids_its_tool_calls_the_same_way_for_the_same_conversation() -> None:
    model = OfflineSalesModel()
    first = model.completion(messages=_chat("how do I pay"), model="m")
    second = model.completion(messages=_chat("how do I pay"), model="m")
    assert first.choices[0].message.tool_calls[0].id == second.choices[0].message.tool_calls[0].id
    assert json.loads(first.choices[0].message.tool_calls[0].function.arguments) == {}


@LITELLM_READONLY_WARNING
def test_completion_with_a_text_answer_has_no_tool_calls_and_stops() -> None:
    response = OfflineSalesModel().completion(messages=_chat("hi"), model="m")
    choice = response.choices[0]
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls
    assert "Bean There" in choice.message.content
    assert response.usage.completion_tokens > 0
