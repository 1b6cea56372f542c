"""Signed-webhook ingest throughput against a bare endpoint on the same HTTP stack, in the same run."""

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.load import Result, run_load
from bench.processes import SELLMESH, server
from schemas.envelope import Channel
from sellmesh.db import make_engine, run_migrations
from sellmesh.localbroker import free_port
from services.gateway.admin import connect_channel_account, create_tenant
from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import sign

SECRET = "bench-app-secret"


def seed(database_url: str) -> str:
    engine = make_engine(database_url)
    run_migrations(engine)
    tenant_id, _ = create_tenant(engine, name="Bench Shop")
    phone_number_id = str(uuid.uuid4().int)[:15]
    connect_channel_account(
        engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=phone_number_id,
        app_secret=SECRET,
        verify_token="bench",
        access_token="bench",
    )
    engine.dispose()
    return phone_number_id


def signed_bodies(phone_number_id: str, count: int) -> list[tuple[bytes, str]]:
    bodies = []
    for i in range(count):
        body = encode(whatsapp_text(phone_number_id=phone_number_id, customer=f"1555{i:07d}", text=f"hello {i}"))
        bodies.append((body, sign(body, SECRET)))
    return bodies


async def post_all(name: str, url: str, bodies: list[tuple[bytes, str]], *, concurrency: int) -> Result:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        def call(body: bytes, signature: str) -> Any:
            async def post() -> bool:
                response = await client.post(
                    url, content=body, headers={"content-type": "application/json", "x-hub-signature-256": signature}
                )
                return response.status_code == 200

            return post

        warmup = [call(b, s) for b, s in bodies[:50]]
        await run_load("warmup", warmup, concurrency=concurrency)
        return await run_load(name, [call(b, s) for b, s in bodies[50:]], concurrency=concurrency)


async def ingest_webhooks(
    *, infra_env: dict[str, str], work_dir: Path, requests: int, concurrency: int
) -> list[Result]:
    database_url = f"sqlite:///{work_dir / 'ingest.db'}"
    phone_number_id = seed(database_url)
    bodies = signed_bodies(phone_number_id, requests + 50)
    bare_port, mesh_port = free_port(), free_port()
    with server(
        [sys.executable, "-m", "bench.bare_server", str(bare_port)], port=bare_port, env={}, log=work_dir / "bare.log"
    ) as bare:
        baseline = await post_all(
            "bare endpoint (same stack)", f"{bare}/webhooks/meta", bodies, concurrency=concurrency
        )
    env = {
        **infra_env,
        "DATABASE_URL": database_url,
        "SELLMESH_HTTP_PORT": str(mesh_port),
        "SELLMESH_LOG_LEVEL": "WARNING",
    }
    with server([SELLMESH, "run", "ingest"], port=mesh_port, env=env, log=work_dir / "ingest.log") as mesh:
        ours = await post_all("sellmesh /webhooks/meta", f"{mesh}/webhooks/meta", bodies, concurrency=concurrency)
    return [baseline, ours]
