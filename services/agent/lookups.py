"""The read-only tools: catalog search and the current order, answered from what the turn already holds (pure)."""

from collections.abc import Mapping
from typing import Any

from schemas.orders import OrderSnapshot
from services.agent.intent import words
from services.agent.prompt import format_money

MAX_RESULTS = 5


def search(catalog: Mapping[str, Mapping[str, Any]], query: str) -> dict[str, Any]:
    """Products ranked by shared words with the query; an empty query lists the first few."""
    asked = {w.rstrip("s") for w in words(query)}
    scored = []
    for product in catalog.values():
        text = f"{product['sku']} {product['name']} {product.get('description', '')}"
        score = len(asked & {w.rstrip("s") for w in words(text)})
        if score or not asked:
            scored.append((-score, str(product["name"]), product))
    found = [dict(p) for _, _, p in sorted(scored, key=lambda t: (t[0], t[1]))[:MAX_RESULTS]]
    return {"ok": True, "tool": "search_products", "products": found}


def show_order(order: OrderSnapshot | None) -> dict[str, Any]:
    if order is None:
        return {"ok": True, "tool": "show_order", "order": None}
    lines = [
        {"sku": line.sku, "name": line.name, "quantity": line.quantity, "unit_price": format_money(line.unit_price)}
        for line in order.lines
    ]
    return {
        "ok": True,
        "tool": "show_order",
        "order": {"state": order.state.value, "lines": lines, "total": format_money(order.total)},
    }
