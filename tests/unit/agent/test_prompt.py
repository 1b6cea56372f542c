"""The system prompt's parts: business, training, catalog, order, and how money is written."""

import json
import re
import uuid

import pytest

from schemas.envelope import Money
from schemas.orders import CustomerDetails, OrderLine, OrderSnapshot, OrderState
from services.agent.prompt import (
    ROLE,
    business_part,
    catalog_part,
    format_money,
    order_part,
    system_prompt,
    training_part,
)

ORDER_ID = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
PRODUCTS = [
    {"sku": "ESP-1", "name": "Espresso beans", "description": "Dark roast, 1 kg", "price": "12.50 EUR", "stock": 4},
    {"sku": "MUG-1", "name": "Caf\u00e9 mug", "description": "Ceramic", "price": "8.00 EUR", "stock": 0},
]


def _block(text: str, name: str) -> object:
    match = re.search(rf"<{name}>(.*?)</{name}>", text, flags=re.DOTALL)
    assert match, f"no <{name}> block"
    return json.loads(match.group(1))


def _order(state: OrderState = OrderState.DRAFT) -> OrderSnapshot:
    line = OrderLine(
        sku="ESP-1", name="Espresso beans", quantity=2, unit_price=Money(amount_minor=1250, currency="EUR")
    )
    return OrderSnapshot(
        order_id=ORDER_ID,
        state=state,
        version=3,
        lines=(line,),
        total=Money(amount_minor=2500, currency="EUR"),
        customer=CustomerDetails(address="1 Main St"),
    )


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1250, "EUR", "12.50 EUR"),
        (5, "EUR", "0.05 EUR"),
        (0, "USD", "0.00 USD"),
        (100, "GBP", "1.00 GBP"),
        (123456789, "EUR", "1234567.89 EUR"),
    ],
)
def test_format_money_writes_two_decimals_from_minor_units(minor: int, currency: str, text: str) -> None:
    assert format_money(Money(amount_minor=minor, currency=currency)) == text


def test_format_money_writes_zero_decimal_currencies_without_cents() -> None:
    assert format_money(Money(amount_minor=1250, currency="JPY")) == "1250 JPY"


def test_format_money_writes_three_decimal_currencies_with_three_digits() -> None:
    assert format_money(Money(amount_minor=1250, currency="KWD")) == "1.250 KWD"


def test_business_part_is_a_json_block_with_the_name() -> None:
    part = business_part('Ana\'s "Caf\u00e9"')
    assert _block(part, "business") == {"name": 'Ana\'s "Caf\u00e9"'}


def test_empty_training_adds_nothing() -> None:
    assert training_part({}) == ""


def test_training_part_lists_tone_language_refusals_policies_and_faq_in_order() -> None:
    training = {
        "tone": "warm and brief",
        "language": "Spanish",
        "refused_topics": ["politics", "medical advice"],
        "policies": {"returns": "30 days with receipt.", "shipping": "2-3 days."},
        "faq": [{"q": "Do you deliver?", "a": "Yes, city-wide."}, {"q": "Open Sundays?"}],
    }
    assert training_part(training).splitlines() == [
        "Tone: warm and brief.",
        "Answer in Spanish.",
        "Do not discuss: politics.",
        "Do not discuss: medical advice.",
        "Policy (returns): 30 days with receipt.",
        "Policy (shipping): 2-3 days.",
        "FAQ: Q: Do you deliver? A: Yes, city-wide.",
        "FAQ: Q: Open Sundays? A: ",
    ]


def test_catalog_part_carries_every_product_as_json() -> None:
    part = catalog_part(PRODUCTS)
    assert part.startswith("Catalog (the only products you may offer):")
    assert _block(part, "catalog") == PRODUCTS


def test_an_empty_catalog_is_an_empty_list() -> None:
    assert _block(catalog_part([]), "catalog") == []


def test_no_order_is_said_plainly() -> None:
    assert order_part(None) == "The customer has no open order."


def test_order_part_shows_state_lines_and_total_with_formatted_prices() -> None:
    data = _block(order_part(_order(OrderState.AWAITING_PAYMENT)), "order")
    assert data == {
        "state": "awaiting_payment",
        "lines": [{"sku": "ESP-1", "name": "Espresso beans", "quantity": 2, "unit_price": "12.50 EUR"}],
        "total": "25.00 EUR",
    }


def test_system_prompt_joins_role_business_training_catalog_and_order() -> None:
    prompt = system_prompt(business="Bean There", training={"tone": "friendly"}, products=PRODUCTS, order=_order())
    assert prompt.startswith(ROLE)
    assert _block(prompt, "business") == {"name": "Bean There"}
    assert "Tone: friendly." in prompt
    assert _block(prompt, "catalog") == PRODUCTS
    assert _block(prompt, "order")["state"] == "draft"  # type: ignore[index]
    positions = [prompt.index(marker) for marker in ("<business>", "Tone:", "<catalog>", "<order>")]
    assert positions == sorted(positions)


def test_system_prompt_skips_empty_training_without_blank_gaps() -> None:
    prompt = system_prompt(business="Shop", training={}, products=[], order=None)
    assert "\n\n\n" not in prompt
    assert prompt.endswith("The customer has no open order.")


def test_the_role_forbids_inventing_prices_and_claiming_changes_are_done() -> None:
    assert "never invent products, prices or stock" in ROLE
    assert "say that you asked" in ROLE
    assert "request_human" in ROLE
