"""Assembles the system prompt from separately tested parts: role, business, training, catalog, order."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.envelope import Money
from schemas.orders import OrderSnapshot

ROLE = (
    "You are the sales assistant of a small business, answering its customers in a chat. "
    "Answer only from the catalog and order below; never invent products, prices or stock. "
    "You cannot change orders yourself: use the tools to propose changes, and say that you asked, "
    "not that it is done. Never set or promise a price or a discount. If the customer asks for a person, "
    "complains, or asks for a refund, call request_human."
)


# Amounts are in the currency's smallest unit as Stripe counts it: not every currency has cents.
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def format_money(money: Money) -> str:
    if money.currency in ZERO_DECIMAL:
        return f"{money.amount_minor} {money.currency}"
    digits = 3 if money.currency in THREE_DECIMAL else 2
    whole, minor = divmod(money.amount_minor, 10**digits)
    return f"{whole}.{minor:0{digits}d} {money.currency}"


def business_part(name: str) -> str:
    return f"<business>{json.dumps({'name': name})}</business>"


def training_part(training: Mapping[str, Any]) -> str:
    lines = []
    if training.get("tone"):
        lines.append(f"Tone: {training['tone']}.")
    if training.get("language"):
        lines.append(f"Answer in {training['language']}.")
    for topic in training.get("refused_topics") or []:
        lines.append(f"Do not discuss: {topic}.")
    for name, text in (training.get("policies") or {}).items():
        lines.append(f"Policy ({name}): {text}")
    for faq in training.get("faq") or []:
        lines.append(f"FAQ: Q: {faq.get('q', '')} A: {faq.get('a', '')}")
    return "\n".join(lines)


def catalog_part(products: Sequence[Mapping[str, Any]]) -> str:
    return f"Catalog (the only products you may offer):\n<catalog>{json.dumps(list(products))}</catalog>"


def order_part(order: OrderSnapshot | None) -> str:
    if order is None:
        return "The customer has no open order."
    lines = [
        {"sku": line.sku, "name": line.name, "quantity": line.quantity, "unit_price": format_money(line.unit_price)}
        for line in order.lines
    ]
    data = {"state": order.state.value, "lines": lines, "total": format_money(order.total)}
    return f"Current order:\n<order>{json.dumps(data)}</order>"


def system_prompt(
    *, business: str, training: Mapping[str, Any], products: Sequence[Mapping[str, Any]], order: OrderSnapshot | None
) -> str:
    parts = [ROLE, business_part(business), training_part(training), catalog_part(products), order_part(order)]
    return "\n\n".join(part for part in parts if part)
