"""A turn's outcome, kept before any of it is published, so that a retried turn publishes the same messages.

A turn that fails after publishing part of its messages (the broker refused one, or Redis failed at `finish`)
runs again once its claim lapses. Planned afresh, it would find the order its first run created and propose
the same change under another id (a turn's command ids count its commands), and orders would apply it twice:
two mugs would become four. Kept here first, one per conversation, the plan is what every run of the turn
publishes: the same ids, which every consumer dedups, and no second model call or quota taken.

The plan names the buffered entries it answered (how many, the first and the last). A customer who wrote again
before the retry adds entries behind them: the retry answers only the planned ones, and the newer ones get a
turn of their own, which sees the order and the exchange the plan made. The burst buffer reads the plan in its
claim's step, and keeps one only for the holder of the claim (`BurstBuffer.keep_plan`): a run whose claim
lapsed must not leave a plan behind for entries that are gone.
"""

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

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
    # The event ids of the first and the last of those entries: a plan is only the buffer's while they are there.
    head: str
    last: str

    def answers(self, entries: Sequence[InboundMessage]) -> bool:
        """True while `entries` (the buffer, from its head) begin with what this plan answered."""
        return (
            0 < self.taken <= len(entries)
            and str(entries[0].event_id) == self.head
            and str(entries[self.taken - 1].event_id) == self.last
        )


def plan_key(tenant_id: uuid.UUID, conversation_id: str) -> str:
    return f"agent:turn:{tenant_id}:{conversation_id}"


def legacy_prefix(tenant_id: uuid.UUID) -> str:
    """Plans used to be kept under the burst's last message: `<prefix><event id>`. Still read and deleted, so a
    turn that failed just before an upgrade is republished after it."""
    return f"agent:turn:{tenant_id}:"


def encode(plan: TurnPlan) -> str:
    messages = [{"topic": t, "key": k, "value": m.model_dump_json()} for t, m, k in plan.messages]
    return json.dumps(
        {"messages": messages, "remember": plan.remember, "taken": plan.taken, "head": plan.head, "last": plan.last}
    )


def decode(raw: str | bytes, entries: Sequence[InboundMessage]) -> TurnPlan:
    """The plan `raw` holds; one kept before plans named their entries answered all of `entries`."""
    data = json.loads(raw)
    messages: Planned = [
        (item["topic"], adapter_for(item["topic"]).validate_json(item["value"]), item["key"])
        for item in data["messages"]
    ]
    if "taken" not in data:
        return TurnPlan(messages, data["remember"], len(entries), str(entries[0].event_id), str(entries[-1].event_id))
    return TurnPlan(messages, data["remember"], int(data["taken"]), str(data["head"]), str(data["last"]))
