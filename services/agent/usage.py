"""One usage row per answered turn (the agent's own table), written with the rows of turns finishing beside it.

The scheduler answers several turns at once; rows handed in while another group is being written share the
next INSERT and commit (`GroupInsert`), and every turn still waits for its own row. How many share depends on
how many turns finish together: at a few dozen turns a second, most groups hold one row. Rows have no natural
key, so a failed group is not written again row by row (that could count a group whose commit landed twice):
each of its turns fails as it would on its own, and a turn answered again calls the model again and writes
that usage.
"""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from schemas.channel import InboundMessage
from sellmesh.group_insert import GroupInsert
from services.agent.model_call import Usage
from services.agent.store import AgentUsage


def usage_row(message: InboundMessage, model: str, usage: Usage) -> dict[str, Any]:
    """The turn's `AgentUsage` row (but its id), as plain values: no table-model object to build per turn."""
    return {
        "tenant_id": message.tenant_id,
        "conversation_id": message.conversation_id,
        "model": model[:128],
        "calls": usage.calls,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost_usd": usage.cost_usd,
        "at": datetime.now(UTC),
    }


def usage_writer(engine: Engine) -> GroupInsert:
    return GroupInsert(engine, AgentUsage.__table__, alone_on_failure=False)  # type: ignore[attr-defined]
