"""Read-only views of the agent's usage and quota, for the gateway."""

import uuid
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from services.agent.plan import plan_of
from services.agent.quota import QuotaCounter
from services.agent.store import AgentUsage


def usage_totals(engine: Engine, tenant_id: uuid.UUID, *, since: datetime) -> dict[str, Any]:
    with Session(engine) as session:
        row = session.exec(
            select(
                func.count(),
                func.coalesce(func.sum(AgentUsage.prompt_tokens), 0),
                func.coalesce(func.sum(AgentUsage.completion_tokens), 0),
                func.coalesce(func.sum(AgentUsage.cost_usd), 0.0),
            ).where(AgentUsage.tenant_id == tenant_id, AgentUsage.at >= since)
        ).one()
    turns, prompt, completion, cost = row
    return {
        "ai_turns": int(turns),
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "cost_usd": round(float(cost), 6),
    }


async def quota_usage(
    redis: Redis, tenant_id: uuid.UUID, training: dict[str, Any], now: datetime
) -> dict[str, int | str]:
    return await QuotaCounter(redis).usage(tenant_id, now, plan_of(training))
