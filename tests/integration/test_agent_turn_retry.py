"""An agent turn that fails after publishing part of what it decided, run again as the scheduler does once its
claim lapses: it publishes what its first run decided, under the same ids, and a draft it dropped never becomes
the conversation's current order (real Redis, SQLite and PostgreSQL, the offline model)."""

import uuid
from collections import Counter
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.orders import AddItem, CreateDraft
from schemas.registry import adapter_for
from schemas.topics import CHANNEL_OUTBOUND, ORDERS_COMMANDS
from sellmesh.settings import OFFLINE_MODEL
from services.agent import memory
from services.agent.burst import DUE_KEY, Burst, BurstBuffer
from services.agent.guardrails import Violation
from services.agent.model_call import ModelChoice
from services.agent.offline_model import register
from services.agent.responder import Responder
from services.agent.turn_plan import plan_key
from services.handoff.query import HUMAN, conversation_mode_key
from tests.builders import inbound_text
from tests.e2e.conftest import seed_shop

pytestmark = pytest.mark.integration


class Broker:
    """What the agent published, by topic; the first publish to `refuse_once` fails, as a broker that is down."""

    def __init__(self, refuse_once: str | None = None) -> None:
        self.published: list[tuple[str, Any]] = []
        self.refuse_once = refuse_once

    async def publish(self, message: bytes, *, topic: str, **_: Any) -> None:
        if topic == self.refuse_once:
            self.refuse_once = None
            raise ConnectionError("broker unreachable")
        self.published.append((topic, adapter_for(topic).validate_json(message)))

    def on(self, topic: str) -> list[Any]:
        return [message for to, message in self.published if to == topic]


def a_shop(engine: Engine) -> uuid.UUID:
    tenant_id, *_ = seed_shop(engine)  # espresso beans among its products
    return tenant_id


async def claimed(buffer: BurstBuffer, redis: Redis, tenant_id: uuid.UUID, text: str) -> Burst:
    message = inbound_text(tenant_id, f"conv-{uuid.uuid4().hex}", text)
    assert await buffer.add(message)
    burst = await buffer.claim(f"{tenant_id}:{message.conversation_id}")
    assert burst is not None
    return burst


async def again(buffer: BurstBuffer, redis: Redis, burst: Burst) -> Burst:
    """The burst claimed anew once the failed run's claim lapsed, as the scheduler's next poll does."""
    await redis.delete(f"agent:burst-lock:{burst.member}")
    await redis.zadd(DUE_KEY, {burst.member: 0})
    retried = await buffer.claim(burst.member)
    assert retried is not None
    return retried


def responder(engine: Engine, redis: Redis, broker: Broker) -> Responder:
    register()
    choice = ModelChoice(model=OFFLINE_MODEL, fallbacks=[], timeout=10)
    return Responder(
        engine=engine,
        redis=redis,
        broker=cast(KafkaBroker, broker),
        buffer=BurstBuffer(redis, quiet_seconds=0),
        choice=choice,
    )


async def test_a_turn_run_again_publishes_the_same_commands_and_the_order_gets_two_not_four(
    migrated_engine: Engine, redis: Redis
) -> None:
    engine = migrated_engine
    tenant_id = a_shop(engine)
    broker = Broker(refuse_once=CHANNEL_OUTBOUND)
    agent = responder(engine, redis, broker)
    burst = await claimed(agent.buffer, redis, tenant_id, "I want two espresso beans")
    with pytest.raises(ConnectionError):
        await agent.answer(burst)  # the commands went out, the reply did not: the turn fails and is run again
    first = {command.event_id for command in broker.on(ORDERS_COMMANDS)}
    assert first and not broker.on(CHANNEL_OUTBOUND)
    retried = await again(agent.buffer, redis, burst)
    assert retried.plan is not None and retried.messages == burst.messages
    answered = await agent.answer(retried)
    commands = broker.on(ORDERS_COMMANDS)
    assert {command.event_id for command in commands} == first  # republished, and orders dedups them
    additions = {(c.event_id, c.quantity) for c in commands if isinstance(c, AddItem)}
    assert len(additions) == 1 and next(iter(additions))[1] == 2
    assert len(broker.on(CHANNEL_OUTBOUND)) == 1
    [draft] = {c.order_id for c in commands if isinstance(c, CreateDraft)}
    state = await memory.turn_state(redis, tenant_id, burst.last.conversation_id)
    assert state.order_id == draft
    # The plan lives as long as its turn: a finished turn leaves nothing behind.
    plan = plan_key(tenant_id, burst.last.conversation_id)
    assert await redis.exists(plan)
    await agent.buffer.finish(retried, answered)
    assert not await redis.exists(plan)


async def test_a_message_written_before_the_retry_gets_a_turn_of_its_own_on_the_same_draft(
    migrated_engine: Engine, redis: Redis
) -> None:
    """The retry answers what its plan answered; the newer message is answered next, editing the draft the plan
    made instead of starting another, and nothing is added twice."""
    engine = migrated_engine
    tenant_id = a_shop(engine)
    broker = Broker(refuse_once=CHANNEL_OUTBOUND)
    agent = responder(engine, redis, broker)
    burst = await claimed(agent.buffer, redis, tenant_id, "I want two espresso beans")
    with pytest.raises(ConnectionError):
        await agent.answer(burst)
    first = {command.event_id for command in broker.on(ORDERS_COMMANDS)}
    newer = inbound_text(tenant_id, burst.last.conversation_id, "and one more espresso beans please")
    assert await agent.buffer.add(newer)

    retried = await again(agent.buffer, redis, burst)
    assert [m.event_id for m in retried.messages] == [burst.last.event_id]
    await agent.buffer.finish(retried, await agent.answer(retried))
    [first_reply] = broker.on(CHANNEL_OUTBOUND)
    assert first_reply.causation_id == burst.last.event_id

    # Still due: the newer message waits in the buffer, and its turn sees the draft and the first exchange.
    assert await redis.zscore(DUE_KEY, burst.member) is not None
    await redis.zadd(DUE_KEY, {burst.member: 0})
    following = await agent.buffer.claim(burst.member)
    assert following is not None and following.plan is None
    assert [m.event_id for m in following.messages] == [newer.event_id]
    assert following.state is not None and following.state.recent
    await agent.buffer.finish(following, await agent.answer(following))

    commands = broker.on(ORDERS_COMMANDS)
    drafts = {c.order_id for c in commands if isinstance(c, CreateDraft)}
    assert len(drafts) == 1
    assert {c.order_id for c in commands if isinstance(c, AddItem)} == drafts
    # The first run's commands went out twice under their ids (orders applies each once); no other did.
    assert {event_id for event_id, n in Counter(c.event_id for c in commands).items() if n > 1} == first
    assert len(broker.on(CHANNEL_OUTBOUND)) == 2
    assert await redis.llen(f"agent:burst:{burst.member}") == 0


async def test_a_draft_dropped_with_the_turn_s_proposals_does_not_become_the_current_order(
    migrated_engine: Engine, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = migrated_engine
    tenant_id = a_shop(engine)
    broker = Broker()
    agent = responder(engine, redis, broker)
    # Every reply fails the guardrails: the turn's proposals are dropped and a person is asked for.
    monkeypatch.setattr(Responder, "_violations", staticmethod(lambda *_: [Violation("unknown_price", "9.99 EUR")]))
    burst = await claimed(agent.buffer, redis, tenant_id, "I want two espresso beans")
    await agent.answer(burst)
    assert broker.on(ORDERS_COMMANDS) == []
    state = await memory.turn_state(redis, tenant_id, burst.last.conversation_id)
    assert state.order_id is None  # the next turn starts a draft that exists, not one that never did


async def test_a_person_who_takes_over_while_the_turn_plans_gets_no_proposal_or_word_of_the_ai(
    migrated_engine: Engine, redis: Redis
) -> None:
    tenant_id = a_shop(migrated_engine)
    broker = Broker()
    agent = responder(migrated_engine, redis, broker)
    burst = await claimed(agent.buffer, redis, tenant_id, "I want two espresso beans")
    assert burst.state is not None and burst.state.mode == "ai"
    # The claim read "ai"; a person takes the conversation while the model is thinking.
    await redis.set(conversation_mode_key(tenant_id, burst.last.conversation_id), HUMAN)
    await agent.answer(burst)
    assert broker.published == []
    assert await redis.get(plan_key(tenant_id, burst.last.conversation_id)) is None
