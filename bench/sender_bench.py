"""Sender throughput against a Graph API stand-in, beside plain HTTP posts of the same bodies, same run."""

import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from bench.envelopes import bench_envelope
from bench.load import Result, run_load
from bench.processes import server
from schemas.channel import Author, OutboundMessage
from schemas.envelope import Channel
from sellmesh.db import make_engine, run_migrations, session_scope
from sellmesh.localbroker import free_port
from sellmesh.redis import make_redis
from services.gateway.admin import connect_channel_account, create_tenant
from services.ingest.graph_client import GraphClient
from services.ingest.ratelimit import SendRateLimiter
from services.ingest.sender import Sender
from services.ingest.store import MessageLog

CUSTOMER = "15559876543"


def seed(database_url: str) -> tuple[uuid.UUID, uuid.UUID, str]:
    """A tenant, its WhatsApp account, and a customer who wrote a moment ago (the 24-hour window is open)."""
    engine = make_engine(database_url)
    run_migrations(engine)
    tenant_id, _ = create_tenant(engine, name="Bench Sender")
    phone_number_id = str(uuid.uuid4().int)[:15]
    account_id = connect_channel_account(
        engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=phone_number_id,
        app_secret="s",
        verify_token="v",
        access_token="bench-token",
    )
    conversation = str(uuid.uuid4())
    with session_scope(engine) as session:
        session.add(
            MessageLog(
                tenant_id=tenant_id,
                channel="whatsapp",
                channel_account_id=account_id,
                conversation_id=conversation,
                direction="in",
                channel_message_id=f"wamid.{uuid.uuid4().hex}",
                event_id=uuid.uuid4(),
                kind="text",
                text="hello",
            )
        )
    engine.dispose()
    return tenant_id, account_id, conversation


def outbound(tenant_id: uuid.UUID, account_id: uuid.UUID, conversation: str, i: int) -> OutboundMessage:
    return OutboundMessage(
        **bench_envelope(tenant_id),
        conversation_id=conversation,
        channel=Channel.WHATSAPP,
        channel_account_id=str(account_id),
        customer_id=CUSTOMER,
        author=Author.AI,
        text=f"reply number {i}",
    )


async def sender_sends(
    *, infra_env: dict[str, str], work_dir: Path, messages: int, concurrency: int = 8
) -> list[Result]:
    database_url = f"sqlite:///{work_dir / 'sender.db'}"
    tenant_id, account_id, conversation = seed(database_url)
    port = free_port()
    with server(
        [sys.executable, "-m", "bench.bare_server", str(port)], port=port, env={}, log=work_dir / "graph.log"
    ) as graph:
        # Both runs post through aiohttp, the sender's own HTTP client, so the gap is the sender's work.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:
            url = f"{graph}/v21.0/123/messages"

            def post(i: int) -> Any:
                async def call() -> bool:
                    body = {
                        "messaging_product": "whatsapp",
                        "to": CUSTOMER,
                        "type": "text",
                        "text": {"body": f"reply {i}"},
                    }
                    headers = {"Authorization": "Bearer bench-token"}
                    async with http.post(url, json=body, headers=headers) as response:
                        await response.read()
                        return response.status == 200

                return call

            baseline = await run_load(
                "plain HTTP posts (same bodies)", [post(i) for i in range(messages)], concurrency=concurrency
            )
        engine = make_engine(database_url)
        redis = make_redis(infra_env["REDIS_URL"])
        # A bucket too large to bind: this measures the sender, the limiter's Redis call included.
        limiter = SendRateLimiter(redis, rate_per_second=1_000_000, burst=1_000_000)
        client = GraphClient(graph, timeout_seconds=30, connections=concurrency)
        sender = Sender(engine=engine, redis=redis, graph=client, limiter=limiter)

        def send(i: int) -> Any:
            async def call() -> bool:
                await sender.on_outbound(outbound(tenant_id, account_id, conversation, i))
                return True

            return call

        ours = await run_load(
            "sellmesh sender (idempotency, window, limiter, log)",
            [send(i) for i in range(messages)],
            concurrency=concurrency,
        )
        await client.close()
        await redis.aclose()
        engine.dispose()
    return [baseline, ours]
