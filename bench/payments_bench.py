"""Stripe webhooks reconciled per second end to end, against the bare verify-and-publish rate of the same edge.

One `sellmesh run payments` process (with its Stripe sandbox) on the local broker and Redis, SQLite.
N paid sessions are seeded; their `checkout.session.completed` events are posted, signed, at once:
- "verify and publish": until every POST is answered (signature, routing, dedup marks, Kafka publish);
- "reconciled end to end": from the first POST until every attempt is `paid` (consume, retrieve the
  session from the sandbox, commit status + audit + outbox);
- "duplicates acknowledged": the same events again, answered from the dedup marks.
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from bench.load import run_load
from bench.processes import SELLMESH, server
from schemas.envelope import Money
from schemas.payments import PaymentLinkCreated
from sellmesh.db import make_engine, run_migrations, session_scope
from sellmesh.localbroker import free_port
from sellmesh.sandbox.stripe_events import signature_header
from sellmesh.settings import SANDBOX_STRIPE_SECRET_KEY, SANDBOX_STRIPE_WEBHOOK_SECRET
from services.gateway.admin import create_tenant
from services.payments.store import PaymentStore

CONCURRENCY = 16
Row = dict[str, float | int | str]


def row(name: str, count: int, seconds: float) -> Row:
    return {"name": name, "count": count, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)}


async def seed(api: str, database_url: str, count: int) -> tuple[uuid.UUID, list[str]]:
    """A tenant with `count` open attempts whose sandbox sessions are then paid; returns the signed event bodies."""
    engine = make_engine(database_url)
    tenant_id, _ = create_tenant(engine, name="Bench Payments")
    headers = {"Authorization": f"Bearer {SANDBOX_STRIPE_SECRET_KEY}"}
    expires = int(time.time()) + 3600
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
        for _ in range(count):
            order_id = uuid.uuid4()
            form = {
                "mode": "payment", "line_items[0][quantity]": "1", "line_items[0][price_data][currency]": "eur",
                "line_items[0][price_data][unit_amount]": "1250",
                "line_items[0][price_data][product_data][name]": "Mug",
                "client_reference_id": str(order_id), "metadata[tenant_id]": str(tenant_id),
                "metadata[order_id]": str(order_id), "expires_at": str(expires),
            }  # fmt: skip
            session = (await http.post("/v1/checkout/sessions", data=form)).raise_for_status().json()
            link = PaymentLinkCreated(
                event_id=uuid.uuid4(), tenant_id=tenant_id, correlation_id=uuid.uuid4(),
                occurred_at=datetime.now(UTC), producer="bench", order_id=order_id,
                checkout_session_id=session["id"], url=session["url"],
                amount=Money(amount_minor=1250, currency="EUR"), expires_at=datetime.now(UTC) + timedelta(hours=1),
            )  # fmt: skip
            with session_scope(engine) as db:
                PaymentStore(db).add_attempt(link, attempt=1)
            (await http.post(f"/_test/sessions/{session['id']}/pay")).raise_for_status()
        bodies: list[str] = []
        params: dict[str, Any] = {"types[0]": "checkout.session.completed", "limit": 100}
        while True:
            page = (await http.get("/v1/events", params=params)).raise_for_status().json()
            bodies.extend(json.dumps(event) for event in page["data"])
            if not page["has_more"]:
                break
            params["starting_after"] = page["data"][-1]["id"]
    engine.dispose()
    return tenant_id, bodies


def paid_count(database_url: str, tenant_id: uuid.UUID) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM payments_attempts WHERE tenant_id = :t AND status = 'paid'")
            return int(conn.execute(query, {"t": tenant_id.hex}).scalar_one())
    finally:
        engine.dispose()


async def post_all(url: str, bodies: list[str], name: str) -> tuple[float, int]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        def call(body: str) -> Any:
            async def post() -> bool:
                signature = signature_header(body, SANDBOX_STRIPE_WEBHOOK_SECRET, timestamp=int(time.time()))
                headers = {"content-type": "application/json", "stripe-signature": signature}
                response = await client.post(url, content=body.encode(), headers=headers)
                return response.status_code == 200

            return post

        result = await run_load(name, [call(body) for body in bodies], concurrency=CONCURRENCY)
    return result.seconds, result.errors


async def payments_webhooks(*, infra_env: dict[str, str], work_dir: Path, events: int) -> list[Row]:
    database_url = f"sqlite:///{work_dir / 'payments.db'}"
    engine = make_engine(database_url)
    run_migrations(engine)
    engine.dispose()
    port = free_port()
    env = {
        **infra_env, "DATABASE_URL": database_url, "SELLMESH_HTTP_PORT": str(port), "SELLMESH_LOG_LEVEL": "WARNING",
        "STRIPE_SANDBOX_SEND_WEBHOOKS": "false", "PAYMENTS_SWEEP_INTERVAL_SECONDS": "3600",
    }  # fmt: skip
    with server([SELLMESH, "run", "payments"], port=port, env=env, log=work_dir / "payments.log") as base:
        tenant_id, bodies = await seed(f"{base}/sandbox/stripe", database_url, events)
        url = f"{base}/webhooks/stripe"
        started = time.perf_counter()
        edge_seconds, errors = await post_all(url, bodies, "verify and publish")
        deadline = started + 300
        while (paid := await asyncio.to_thread(paid_count, database_url, tenant_id)) < len(bodies):
            if time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.05)
        reconciled_seconds = time.perf_counter() - started
        duplicate_seconds, duplicate_errors = await post_all(url, bodies, "duplicates")
    if errors or duplicate_errors or paid < len(bodies):
        raise RuntimeError(f"{errors + duplicate_errors} failed posts; {paid} of {len(bodies)} reconciled")
    return [
        row("stripe webhook: verify and publish", len(bodies), edge_seconds),
        row("stripe webhook: reconciled end to end", paid, reconciled_seconds),
        row("stripe webhook: duplicates acknowledged", len(bodies), duplicate_seconds),
    ]
