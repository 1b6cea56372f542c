"""The agent's notices against this machine's Redis: repeated refusals of the AI's proposals bring a person in,
counted once per refusal however often one is delivered, and a hand-over that failed is made on redelivery."""

import json
import uuid
from typing import Any

import pytest
from redis.asyncio import Redis

from schemas.envelope import Actor, ActorKind
from schemas.orders import CommandRejected, RejectionReason
from schemas.topics import CHANNEL_OUTBOUND, HANDOFF_COMMANDS
from services.agent import memory
from services.agent.notices import REFUSALS, REPEATED_REFUSAL, Notices
from tests.builders import envelope, inbound_text

pytestmark = pytest.mark.integration


class Broker:
    """Stands in for the broker's publish: what went to which topic; refuses publishes to `down` topics."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.down: set[str] = set()

    async def publish(self, message: bytes, *, topic: str, **_: Any) -> None:
        if topic in self.down:
            raise ConnectionError("broker unreachable")
        self.published.append((topic, json.loads(message)))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [body for to, body in self.published if to == topic]


async def an_ai_order(redis: Redis) -> tuple[uuid.UUID, uuid.UUID]:
    tenant, order = uuid.uuid4(), uuid.uuid4()
    await memory.remember_order_conversation(redis, inbound_text(tenant, f"conv-{order}", "add a mug"), order)
    return tenant, order


def rejection(tenant: uuid.UUID, order: uuid.UUID) -> CommandRejected:
    return CommandRejected(
        **envelope(tenant),
        order_id=order,
        command_id=uuid.uuid4(),
        command_type="add_item",
        actor=Actor(kind=ActorKind.AI, id="agent"),
        reason=RejectionReason.OUT_OF_STOCK,
    )


async def test_a_redelivered_refusal_counts_once(redis: Redis) -> None:
    tenant, order = await an_ai_order(redis)
    broker = Broker()
    notices = Notices(redis=redis, broker=broker)  # type: ignore[arg-type]
    first, second = rejection(tenant, order), rejection(tenant, order)
    for event in (first, first, first, second):
        await notices.on_order_event(event)
    told = [body["text"] for body in broker.on(CHANNEL_OUTBOUND)]
    assert told == [REFUSALS[RejectionReason.OUT_OF_STOCK]] * 4  # two refusals, the first delivered three times
    assert broker.on(HANDOFF_COMMANDS) == []


async def test_a_hand_over_that_failed_is_made_when_the_third_refusal_is_delivered_again(redis: Redis) -> None:
    tenant, order = await an_ai_order(redis)
    broker = Broker()
    notices = Notices(redis=redis, broker=broker)  # type: ignore[arg-type]
    await notices.on_order_event(rejection(tenant, order))
    await notices.on_order_event(rejection(tenant, order))
    third = rejection(tenant, order)
    broker.down = {HANDOFF_COMMANDS}
    with pytest.raises(ConnectionError):
        await notices.on_order_event(third)  # the customer was told a person is coming; the request was not sent
    broker.down = set()
    await notices.on_order_event(third)  # the subscriber delivers it again
    [request] = broker.on(HANDOFF_COMMANDS)
    assert request["type"] == "request" and request["reason"] == "rejected_command"
    promises = [body for body in broker.on(CHANNEL_OUTBOUND) if body["text"] == REPEATED_REFUSAL]
    assert len(promises) == 2 and len({body["event_id"] for body in promises}) == 1  # the sender sends it once
    # A person was asked for: the count starts again.
    await notices.on_order_event(rejection(tenant, order))
    assert len(broker.on(HANDOFF_COMMANDS)) == 1
