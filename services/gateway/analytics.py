"""Per-day analytics of a tenant, put together from the query modules and the gateway's own read model."""

import uuid
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine

from services.agent.query import usage_totals
from services.gateway.activity import conversations_started, handoffs_opened
from services.gateway.commerce_models import Analytics, DayStats, Revenue
from services.orders.query import orders_by_day, paid_conversations

MAX_DAYS = 92


def _start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def tenant_analytics(engine: Engine, tenant_id: uuid.UUID, *, since: date, until: date) -> Analytics:
    """Days `since` to `until` inclusive (UTC). Conversations are those started that day; orders and paid
    conversations count orders created that day, by their state now; AI replies and cost are answered turns."""
    days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    begin, end = _start(since), _start(until + timedelta(days=1))
    started = conversations_started(engine, tenant_id, since=begin, until=end)
    handoffs = handoffs_opened(engine, tenant_id, since=begin, until=end)
    orders = orders_by_day(engine, tenant_id, since=begin, until=end)
    # usage_totals counts from a moment on; the difference of two consecutive midnights is one day.
    usage = [usage_totals(engine, tenant_id, since=_start(day)) for day in [*days, until + timedelta(days=1)]]
    stats = []
    for index, day in enumerate(days):
        paid = paid_conversations(engine, tenant_id, since=_start(day), until=_start(day + timedelta(days=1)))
        stats.append(
            DayStats(
                day=day.isoformat(),
                conversations=started.get(day, 0),
                ai_replies=usage[index]["ai_turns"] - usage[index + 1]["ai_turns"],
                handoffs=dict(handoffs.get(day, Counter())),
                orders=[
                    Revenue(state=o.state, currency=o.currency, orders=o.orders, total_minor=o.total_minor)
                    for o in orders
                    if o.day == day
                ],
                paid_conversations=len(paid),
                ai_cost_usd=round(usage[index]["cost_usd"] - usage[index + 1]["cost_usd"], 6),
            )
        )
    totals = _totals(stats, paid=len(paid_conversations(engine, tenant_id, since=begin, until=end)))
    conversion = min(1.0, totals.paid_conversations / totals.conversations) if totals.conversations else 0.0
    return Analytics(
        since=since.isoformat(), until=until.isoformat(), days=stats, totals=totals, conversion=round(conversion, 4)
    )


def _totals(stats: list[DayStats], *, paid: int) -> DayStats:
    handoffs: Counter[str] = Counter()
    revenue: dict[tuple[str, str], list[int]] = {}
    for day in stats:
        handoffs.update(day.handoffs)
        for row in day.orders:
            cell = revenue.setdefault((row.state.value, row.currency), [0, 0])
            cell[0] += row.orders
            cell[1] += row.total_minor
    return DayStats(
        day="total",
        conversations=sum(d.conversations for d in stats),
        ai_replies=sum(d.ai_replies for d in stats),
        handoffs=dict(handoffs),
        orders=[
            Revenue.model_validate({"state": state, "currency": currency, "orders": n, "total_minor": total})
            for (state, currency), (n, total) in sorted(revenue.items())
        ],
        paid_conversations=paid,
        ai_cost_usd=round(sum(d.ai_cost_usd for d in stats), 6),
    )
