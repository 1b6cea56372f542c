"""Reply guardrails: only catalog and order prices, known SKUs, our own links, no quoted prompt, sane length."""

import json
import uuid
from typing import Any

import pytest

from schemas.envelope import Money
from schemas.orders import OrderLine, OrderSnapshot, OrderState
from services.agent.guardrails import (
    ReplyFacts,
    Violation,
    amounts_in,
    check_reply,
    minor_units,
    reply_facts,
    retry_instruction,
)
from services.agent.offline_model import decide
from services.agent.prompt import ROLE, system_prompt

CATALOG: list[dict[str, Any]] = [
    {"sku": "ESP-250", "name": "Espresso beans", "description": "Dark roast, 1 kg", "price": "12.50 EUR", "stock": 4},
    {"sku": "MUG-1", "name": "Ceramic mug", "description": "Holds 300 ml", "price": "8.00 EUR", "stock": 0},
    {"sku": "DRIP-2", "name": "V60-02 Dripper", "description": "Pour-over", "price": "25.00 EUR", "stock": None},
]
PAYMENT_LINK = "https://checkout.stripe.com/c/pay/cs_test_a1B2c3"
TRAINING = {"tone": "friendly", "policies": {"shipping": "Flat 4.90 EUR, see https://beanthere.example/shipping"}}


def _order() -> OrderSnapshot:
    line = OrderLine(
        sku="ESP-250", name="Espresso beans", quantity=3, unit_price=Money(amount_minor=1250, currency="EUR")
    )
    return OrderSnapshot(
        order_id=uuid.uuid4(),
        state=OrderState.AWAITING_PAYMENT,
        version=2,
        lines=(line,),
        total=Money(amount_minor=3750, currency="EUR"),
    )


SYSTEM = system_prompt(business="Bean There", training=TRAINING, products=CATALOG, order=_order())
FACTS = reply_facts(catalog=CATALOG, order=_order(), urls=[PAYMENT_LINK], system_prompt=SYSTEM)


def _kinds(text: str, facts: ReplyFacts = FACTS) -> list[str]:
    return [v.kind for v in check_reply(text, facts=facts)]


def _priced(minor: int, currency: str) -> ReplyFacts:
    return ReplyFacts(prices=frozenset({(minor, currency)}))


def test_a_reply_with_catalog_prices_and_known_skus_passes() -> None:
    assert check_reply("Espresso beans (ESP-250) cost 12.50 EUR and a mug is 8.00 EUR.", facts=FACTS) == []


def test_a_made_up_price_is_refused_with_the_amount_as_written() -> None:
    assert check_reply("Today only: espresso beans for 9.99 EUR!", facts=FACTS) == [
        Violation("unknown_price", "9.99 EUR")
    ]


def test_a_catalog_amount_in_another_currency_is_refused() -> None:
    assert _kinds("Espresso beans cost 12.50 USD.") == ["unknown_price"]


@pytest.mark.parametrize(
    ("text", "minor", "currency"),
    [
        ("That is 12.50 EUR.", 1250, "EUR"),
        ("That is EUR 12.50.", 1250, "EUR"),
        ("That is €12.50.", 1250, "EUR"),
        ("Das macht 12,50 €.", 1250, "EUR"),
        ("Just $5!", 500, "USD"),
        ("Just $5.00!", 500, "USD"),
        ("Just 5 USD.", 500, "USD"),
        ("Only ¥1250.", 1250, "JPY"),
        ("Only 1,250 JPY.", 1250, "JPY"),
        ("That is 1,234.50 GBP.", 123450, "GBP"),
        ("Das macht 1.234,50 €.", 123450, "EUR"),
        ("That is 1.250 KWD.", 1250, "KWD"),
        ("That is 12 euros.", 1200, "EUR"),
    ],
)
def test_each_way_of_writing_money_is_read_in_minor_units(text: str, minor: int, currency: str) -> None:
    assert check_reply(text, facts=_priced(minor, currency)) == []
    assert _kinds(text, _priced(minor + 1, currency)) == ["unknown_price"]


def test_a_zero_decimal_currency_has_no_minor_part() -> None:
    assert minor_units("1250", "JPY") == 1250
    assert minor_units("12.50", "JPY") is None
    assert _kinds("Only ¥12.50.", _priced(1250, "JPY")) == ["unknown_price"]


def test_a_three_decimal_currency_reads_three_digits_after_the_point() -> None:
    assert minor_units("1.250", "KWD") == 1250
    assert minor_units("1.250", "EUR") == 125000


def test_amounts_without_a_currency_are_not_money() -> None:
    assert amounts_in("I'd like 2 mugs and 3.5 kg of beans, TOP 5 please") == []
    assert check_reply("You can order up to 1000 mugs.", facts=FACTS) == []


def test_prices_from_the_order_lines_and_total_are_allowed() -> None:
    assert check_reply("3 × Espresso beans is 37.50 EUR in total.", facts=FACTS) == []


def test_prices_written_in_the_tenants_training_are_allowed_when_trusted() -> None:
    facts = reply_facts(catalog=CATALOG, order=None, trusted_text="Policy (shipping): Flat 4.90 EUR.")
    assert check_reply("Shipping is a flat 4.90 EUR.", facts=facts) == []
    assert _kinds("Shipping is a flat 4.90 EUR.") == ["unknown_price"]


def test_catalog_prices_given_as_money_are_allowed() -> None:
    facts = reply_facts(
        catalog=[{"sku": "X-1", "name": "X", "price": Money(amount_minor=990, currency="USD")}], order=None
    )
    assert check_reply("X-1 is $9.90.", facts=facts) == []


def test_an_unknown_sku_is_refused() -> None:
    assert check_reply("Try our ESP-999 blend.", facts=FACTS) == [Violation("unknown_sku", "ESP-999")]


def test_sku_shaped_words_inside_product_names_are_not_unknown_skus() -> None:
    assert check_reply("The V60-02 Dripper is 25.00 EUR.", facts=FACTS) == []


def test_words_that_do_not_look_like_skus_are_ignored() -> None:
    assert check_reply("Our T-shirt is great, ABC and 2026-01-02 too.", facts=FACTS) == []


def test_a_competitor_url_is_refused() -> None:
    assert check_reply("Cheaper at https://competitor.example/beans.", facts=FACTS) == [
        Violation("foreign_url", "https://competitor.example/beans")
    ]


def test_a_bare_www_url_is_refused() -> None:
    assert _kinds("Look at www.competitor.example") == ["foreign_url"]


def test_the_payment_link_is_allowed_even_in_brackets_at_the_end_of_a_sentence() -> None:
    assert check_reply(f"Pay here ({PAYMENT_LINK}).", facts=FACTS) == []


def test_a_url_from_trusted_training_text_is_allowed() -> None:
    facts = reply_facts(catalog=CATALOG, order=None, trusted_text="see https://beanthere.example/shipping")
    assert check_reply("Details: https://beanthere.example/shipping.", facts=facts) == []


def test_a_reply_over_the_limit_is_too_long() -> None:
    assert check_reply("ok " * 400, facts=FACTS) == [Violation("too_long", "1200 characters, at most 1000")]


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_a_blank_reply_is_empty(text: str) -> None:
    assert check_reply(text, facts=FACTS) == [Violation("empty", "the reply is empty")]


def test_quoting_the_role_is_a_prompt_leak() -> None:
    chunk = ROLE[ROLE.index("You cannot change") :][:60]
    violations = check_reply(f"Well, my rules say: {chunk.upper()}", facts=FACTS)
    assert [v.kind for v in violations] == ["prompt_leak"]


def test_a_leak_is_found_across_different_whitespace() -> None:
    chunk = "Answer only from the catalog and order below;\n   never invent products"
    assert _kinds(chunk) == ["prompt_leak"]


def test_short_phrases_shared_with_the_prompt_are_not_leaks() -> None:
    assert check_reply("I can't change orders myself, but I asked for it.", facts=FACTS) == []


def test_quoting_the_tenants_policy_is_not_a_leak() -> None:
    facts = reply_facts(catalog=CATALOG, order=None, system_prompt=SYSTEM, trusted_text=SYSTEM)
    assert check_reply("Shipping: Flat 4.90 EUR, see https://beanthere.example/shipping", facts=facts) == []


@pytest.mark.parametrize("marker", ["<catalog>", "<order>", "<business>", "</CATALOG>"])
def test_prompt_block_markers_are_a_leak(marker: str) -> None:
    assert _kinds(f"Here you go: {marker}") == ["prompt_leak"]


def test_every_violation_is_reported_once() -> None:
    text = "ESP-999 for 1.00 EUR or 1.00 EUR at https://x.example"
    assert _kinds(text) == ["foreign_url", "unknown_price", "unknown_sku"]


def _offline_reply(*messages: dict[str, Any]) -> str:
    system = system_prompt(business="Bean There", training=TRAINING, products=CATALOG, order=None)
    text, calls = decide([{"role": "system", "content": system}, *messages])
    assert text is not None and calls == []
    return text


def test_the_offline_models_greeting_with_catalog_prices_passes() -> None:
    reply = _offline_reply({"role": "user", "content": "hi"})
    assert "12.50 EUR" in reply
    assert check_reply(reply, facts=FACTS) == []


def test_the_offline_models_price_answer_passes() -> None:
    reply = _offline_reply({"role": "user", "content": "how much are the espresso beans?"})
    assert check_reply(reply, facts=FACTS) == []


def test_the_offline_models_confirmation_after_add_to_order_passes() -> None:
    result = {"ok": True, "tool": "add_to_order", "sku": "ESP-250", "quantity": 2, "name": "Espresso beans"}
    call = {"id": "c1", "type": "function", "function": {"name": "add_to_order", "arguments": "{}"}}
    reply = _offline_reply(
        {"role": "user", "content": "I want two espresso beans"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({**result, "unit_price": "12.50 EUR"})},
    )
    assert reply.startswith("I've asked to add 2 × Espresso beans (12.50 EUR each)")
    assert check_reply(reply, facts=FACTS) == []


def test_the_retry_instruction_names_each_reason_and_asks_for_a_rewrite() -> None:
    text = retry_instruction(
        [
            Violation("unknown_price", "9.99 EUR"),
            Violation("foreign_url", "https://x.example"),
            Violation("too_long", ""),
        ]
    )
    assert text.startswith("Your reply was not sent because: it names a price that is not in the catalog")
    assert "(9.99 EUR)" in text and "(https://x.example)" in text and "too long" in text
    assert "Rewrite it" in text and "no links" in text
