"""Writes one usage row per answered turn (the agent's own table)."""

from sqlalchemy import Engine

from schemas.channel import InboundMessage
from sellmesh.db import insert_new
from services.agent.model_call import Usage
from services.agent.store import AgentUsage


def record_usage(engine: Engine, message: InboundMessage, model: str, usage: Usage) -> None:
    insert_new(
        engine,
        AgentUsage(
            tenant_id=message.tenant_id,
            conversation_id=message.conversation_id,
            model=model[:128],
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
        ),
    )
