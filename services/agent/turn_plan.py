"""A turn's outcome, kept before any of it is published, so that a retried turn publishes the same messages.

A turn that fails after publishing part of its messages (the broker refused one, or Redis failed at `finish`)
runs again once its claim lapses. Planned afresh, it would find the order its first run created and propose
the same change under another id (a turn's command ids count its commands), and orders would apply it twice:
two mugs would become four. Kept here first, one per conversation, the plan is what every run of the turn
publishes: the same ids, which every consumer dedups, and no second model call or quota taken.

The plan names how many buffered entries it answered (`taken`). A customer who wrote again before the retry
adds entries behind them: the retry answers only the planned ones, and the newer ones get a turn of their
own, which sees the order and the exchange the plan made. The burst buffer reads the plan in its claim's step.
"""

import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from schemas.channel import InboundMessage
from schemas.envelope import Envelope
from schemas.registry import adapter_for

# A plan is deleted when its turn finishes (`BurstBuffer.finish`); this only bounds one whose turn never does.
PLAN_TTL_SECONDS: Final = 86_400

Planned = list[tuple[str, Envelope, str]]  # (topic, message, key), in the order they are published


@dataclass(frozen=True)
class TurnPlan:
    messages: Planned
    remember: list[dict[str, Any]]  # the exchange the scheduler adds to the conversation's memory
    taken: int  # how many buffered entries (duplicates included) the turn answers, from the buffer's head


def plan_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    return f"agent:turn:{tenant_id}:{conversation_id}"


def encode(plan: TurnPlan) -> str:
    messages = [{"topic": t, "key": k, "value": m.model_dump_json()} for t, m, k in plan.messages]
    return json.dumps({"messages": messages, "remember": plan.remember, "taken": plan.taken})


def decode(raw: str | bytes) -> TurnPlan:
    data = json.loads(raw)
    messages: Planned = [
        (item["topic"], adapter_for(item["topic"]).validate_json(item["value"]), item["key"])
        for item in data["messages"]
    ]
    return TurnPlan(messages, data["remember"], int(data["taken"]))


async def keep(redis: Redis, message: InboundMessage, plan: TurnPlan) -> TurnPlan:
    """Keeps `plan` unless one is kept for the conversation already (a run whose claim lapsed planned first);
    returns the one that stands."""
    key = plan_key(message.tenant_id, message.conversation_id)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(key, encode(plan), nx=True, ex=PLAN_TTL_SECONDS)
        pipe.get(key)
        kept, raw = await pipe.execute()
    return plan if kept or raw is None else decode(raw)
