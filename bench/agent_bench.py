"""Agent cost per message: a full turn (buffer claim, context, tools, guardrails, publish) vs the bare model call."""

import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import litellm

from bench.envelopes import bench_envelope
from bench.load import Result
from schemas.channel import InboundMessage, TextContent
from schemas.envelope import Channel
from sellmesh.broker import make_broker
from sellmesh.db import make_engine, run_migrations, session_scope
from sellmesh.redis import make_redis
from sellmesh.service import now
from services.agent import offline_model, responder
from services.agent.burst import BurstBuffer
from services.agent.model_call import ModelChoice
from services.agent.prompt import system_prompt
from services.agent.responder import Responder
from services.gateway.admin import create_tenant
from services.orders.store import upsert_product

TEXTS = ("hello", "how much is the mug?", "I want two espresso beans", "what is in my order?")


def inbound(tenant_id: uuid.UUID, text: str) -> InboundMessage:
    envelope = bench_envelope(tenant_id)
    return InboundMessage(
        **envelope,
        conversation_id=str(uuid.uuid4()),
        channel=Channel.WHATSAPP,
        channel_account_id=str(uuid.uuid4()),
        customer_id="15550000000",
        message_id=f"wamid.{envelope['event_id'].hex}",
        sent_at=now(),
        content=TextContent(text=text),
    )


async def timed(name: str, count: int, one: Callable[[int], Awaitable[Any]]) -> Result:
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        t = time.perf_counter()
        await one(i)
        latencies.append((time.perf_counter() - t) * 1000)
    return Result(name, count, time.perf_counter() - started, latencies, 0)


async def agent_overhead(*, infra_env: dict[str, str], work_dir: Path, messages: int) -> list[Result]:
    offline_model.register()
    await offline_model.warm_up()
    engine = make_engine(f"sqlite:///{work_dir / 'agent.db'}")
    run_migrations(engine)
    tenant_id, _ = create_tenant(engine, name="Bench Roasters")
    with session_scope(engine) as session:
        for sku, name, price in (("ESP-250", "Espresso beans 250g", 1250), ("MUG-01", "Ceramic mug", 900)):
            upsert_product(
                session,
                tenant_id=tenant_id,
                sku=sku,
                name=name,
                description="",
                price_minor=price,
                currency="EUR",
                stock=None,
            )
    redis = make_redis(infra_env["REDIS_URL"])
    broker = make_broker(
        bootstrap_servers=infra_env["KAFKA_BOOTSTRAP_SERVERS"],
        enable_idempotence=False,
        client_id="bench",
    )
    await broker.connect()
    choice = ModelChoice(model=f"{offline_model.PROVIDER}/bench", fallbacks=[], timeout=30)
    agent = Responder(
        engine=engine, redis=redis, broker=broker, buffer=BurstBuffer(redis, quiet_seconds=0), choice=choice
    )
    system = system_prompt(business="Bench", training={}, products=[], order=None)

    async def bare(i: int) -> None:
        await litellm.acompletion(
            model=choice.model,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": TEXTS[i % 4]}],
        )

    async def turn(i: int) -> None:
        # A whole turn as the scheduler runs it: buffered, claimed, answered and finished in the buffer.
        message = inbound(tenant_id, TEXTS[i % 4])
        await agent.buffer.add(message)
        burst = await agent.buffer.claim(f"{message.tenant_id}:{message.conversation_id}")
        assert burst is not None
        await agent.buffer.finish(burst, await agent.answer(burst))

    results = [await timed("bare litellm call (offline model)", messages, bare)]
    results.append(await timed("full agent turn (offline model)", messages, turn))
    canned = await litellm.acompletion(model=choice.model, messages=[{"role": "user", "content": "hello"}])

    async def no_model(*args: Any, **kwargs: Any) -> Any:
        return canned

    # The responder calls the model through its own module's name: replace it there for this one run.
    with mock.patch.object(responder, "call_model", no_model):
        results.append(await timed("agent turn without the model call", messages, turn))

    await broker.stop()
    await redis.aclose()
    engine.dispose()
    return results
