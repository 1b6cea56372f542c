"""A turn's outcome, kept before any of it is published, so that a retried turn publishes the same messages.

A turn that fails after publishing part of its messages (the broker refused one, or Redis failed at `finish`)
runs again once its claim lapses. Planned afresh, it would find the order its first run created and propose
the same change under another id (a turn's command ids count its commands), and orders would apply it twice:
two mugs would become four. Kept here first, under the last inbound message's id, the plan is what every run
of the turn publishes: the same ids, which every consumer dedups, and no second model call or quota taken.
"""

import json
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


def plan_key(message: InboundMessage) -> str:
    return f"agent:turn:{message.tenant_id}:{message.event_id}"


def encode(plan: TurnPlan) -> str:
    messages = [{"topic": t, "key": k, "value": m.model_dump_json()} for t, m, k in plan.messages]
    return json.dumps({"messages": messages, "remember": plan.remember})


def decode(raw: str | bytes) -> TurnPlan:
    data = json.loads(raw)
    messages: Planned = [
        (item["topic"], adapter_for(item["topic"]).validate_json(item["value"]), item["key"])
        for item in data["messages"]
    ]
    return TurnPlan(messages, data["remember"])


async def planned(redis: Redis, message: InboundMessage) -> TurnPlan | None:
    """The plan an earlier run of this turn kept, if any."""
    raw = await redis.get(plan_key(message))
    return None if raw is None else decode(raw)


async def keep(redis: Redis, message: InboundMessage, plan: TurnPlan) -> TurnPlan:
    """Keeps `plan` unless a plan is kept for this turn already; returns the one that stands."""
    if await redis.set(plan_key(message), encode(plan), nx=True, ex=PLAN_TTL_SECONDS):
        return plan
    return await planned(redis, message) or plan
