"""One usage row per answered turn (the agent's own table), written in groups with the turns answered beside it.

The scheduler answers several turns at once, so their rows share one INSERT and one commit (`GroupInsert`)
instead of a transaction each; every turn still waits for its own row. Rows have no natural key: a turn
answered again after a failure calls the model again and writes its usage again, as it did before grouping.
"""

from typing import Any

from sqlalchemy import Engine

from schemas.channel import InboundMessage
from sellmesh.db import row_values
from sellmesh.group_insert import GroupInsert
from services.agent.model_call import Usage
from services.agent.store import AgentUsage


def usage_row(message: InboundMessage, model: str, usage: Usage) -> dict[str, Any]:
    return row_values(
        AgentUsage(
            tenant_id=message.tenant_id,
            conversation_id=message.conversation_id,
            model=model[:128],
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
        )
    )


def usage_writer(engine: Engine) -> GroupInsert:
    return GroupInsert(engine, AgentUsage.__table__)  # type: ignore[attr-defined]
