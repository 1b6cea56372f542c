"""The notification webhook against a local HTTP server: signed, retried with backoff, never logging secrets,
and never posted inside the network unless local receivers are allowed (as here, for the server on 127.0.0.1)."""

import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
import uvicorn
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff
from sellmesh.localbroker import free_port
from sellmesh.logging import JsonFormatter
from sellmesh.metrics import registry
from services.gateway.admin import create_tenant
from services.gateway.store import Tenant
from services.handoff.delivery import NotificationDelivery, resolve_host
from services.handoff.handlers import on_handoff_command
from services.handoff.notification import HandoffNotificationRow
from tests.builders import envelope

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
SECRET = "whsec-" + uuid.uuid4().hex


@dataclass
class Hook:
    """A tenant's webhook receiver: answers with the scripted statuses first, then 200."""

    port: int = field(default_factory=free_port)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _receive(self, request: Request) -> Response:
        body = await request.body()
        self.received.append((dict(request.headers), body))
        status = self.script.pop(0) if self.script else 200
        return Response(status_code=status)


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    receiver = Hook()
    app = Starlette(routes=[Route("/{path}", receiver._receive, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=receiver.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "webhook receiver did not start"
        time.sleep(0.01)
    yield receiver
    server.should_exit = True
    thread.join(timeout=10)


class Clock:
    def __init__(self) -> None:
        self.at = T0

    def __call__(self) -> datetime:
        return self.at


def notified_tenant(engine: Engine, url: str) -> uuid.UUID:
    tenant_id, _ = create_tenant(engine, name=f"Notify test {uuid.uuid4().hex[:6]}")
    with Session(engine) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        tenant.training = json.dumps({"handoff": {"notify_url": url}})
        tenant.notify_secret = SECRET
        session.add(tenant)
        session.commit()
    return tenant_id


def request(tenant: uuid.UUID) -> RequestHandoff:
    return RequestHandoff(
        **envelope(tenant),
        conversation_id=f"conv-{uuid.uuid4().hex[:8]}",
        actor=Actor(kind=ActorKind.AI),
        reason=HandoffReason.COMPLAINT_OR_REFUND,
        channel=Channel.WHATSAPP,
        channel_account_id="acc",
        customer_id="c1",
    )


def rows(engine: Engine, tenant: uuid.UUID) -> list[HandoffNotificationRow]:
    with Session(engine) as session:
        query = select(HandoffNotificationRow).where(HandoffNotificationRow.tenant_id == tenant)
        return list(session.exec(query))


def received_by(hook: Hook, tenant: uuid.UUID) -> list[tuple[dict[str, str], bytes]]:
    return [(h, b) for h, b in hook.received if json.loads(b)["tenant_id"] == str(tenant)]


async def test_events_reach_the_webhook_signed_after_a_failure_and_a_backoff(
    migrated_engine: Engine, redis: Redis, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = notified_tenant(migrated_engine, hook.url("handoff"))
    command = request(tenant)
    await on_handoff_command(command, engine=migrated_engine, redis=redis, at=T0)
    assert received_by(hook, tenant) == []  # the handler only queued; delivery is another task's work
    clock = Clock()
    delivery = NotificationDelivery(engine=migrated_engine, allow_local=True, clock=clock)
    hook.script[:] = [503]
    caplog.set_level(logging.INFO)
    await delivery.deliver_once()  # opened: 503; escalated (nobody on the team): 200
    clock.at = T0 + timedelta(seconds=1)
    await delivery.deliver_once()  # the failed one is not due for 2 s
    assert sorted(r.status for r in rows(migrated_engine, tenant)) == ["delivered", "pending"]
    clock.at = T0 + timedelta(seconds=3)
    await delivery.deliver_once()
    await delivery.stop()
    assert {r.status for r in rows(migrated_engine, tenant)} == {"delivered"}
    mine = received_by(hook, tenant)
    assert [json.loads(b)["type"] for _, b in mine] == ["opened", "escalated", "opened"]
    headers, body = mine[-1]
    timestamp = headers["x-sellmesh-timestamp"]
    assert timestamp == str(int(clock.at.timestamp()))
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["x-sellmesh-signature"] == f"sha256={expected}"
    assert headers["x-sellmesh-event-id"] == json.loads(body)["event_id"]
    assert json.loads(body)["causation_id"] == str(command.event_id)
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert SECRET not in logged


async def test_a_webhook_that_keeps_failing_is_given_up_and_counted(
    migrated_engine: Engine, redis: Redis, hook: Hook
) -> None:
    tenant = notified_tenant(migrated_engine, f"http://127.0.0.1:{free_port()}/nobody-listens")
    await on_handoff_command(request(tenant), engine=migrated_engine, redis=redis, at=T0)
    clock = Clock()
    delivery = NotificationDelivery(engine=migrated_engine, allow_local=True, clock=clock, max_attempts=2)
    failed = registry.get_sample_value("sellmesh_handoff_notifications_total", {"outcome": "failed"}) or 0.0
    for seconds in (0, 10):
        clock.at = T0 + timedelta(seconds=seconds)
        await delivery.deliver_once()
    await delivery.stop()
    stored = rows(migrated_engine, tenant)
    assert {(r.status, r.attempts, r.last_error) for r in stored} == {("failed", 2, "ConnectError")}
    after = registry.get_sample_value("sellmesh_handoff_notifications_total", {"outcome": "failed"})
    assert after == failed + len(stored)


async def test_a_url_inside_the_network_is_refused_once_marked_failed_and_never_reached(
    migrated_engine: Engine, redis: Redis, hook: Hook, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the allowance (production's default): plain http, a name for this machine, and a public-looking
    name whose DNS answer is the metadata service are each refused on the first try, not retried for an hour."""

    async def dns(host: str, port: int) -> list[str]:
        return ["169.254.169.254"] if host == "hooks.example.test" else await resolve_host(host, port)

    tenants = {
        notified_tenant(migrated_engine, hook.url("plain")): "refused: notify_url uses http; only https is delivered",
        notified_tenant(migrated_engine, f"https://localhost:{hook.port}/h"): "refused: the host resolves to a "
        "loopback address",
        notified_tenant(migrated_engine, "https://hooks.example.test/h"): "refused: the host resolves to a link-local "
        "address 169.254.169.254",
    }
    for tenant in tenants:
        await on_handoff_command(request(tenant), engine=migrated_engine, redis=redis, at=T0)
    failed = registry.get_sample_value("sellmesh_handoff_notifications_total", {"outcome": "failed"}) or 0.0
    delivery = NotificationDelivery(engine=migrated_engine, resolve=dns, clock=Clock())
    caplog.set_level(logging.INFO)
    await delivery.deliver_once()
    await delivery.stop()
    for tenant, reason in tenants.items():
        stored = rows(migrated_engine, tenant)
        assert [(r.status, r.attempts) for r in stored] == [("failed", 1), ("failed", 1)]  # opened and escalated
        assert all(r.last_error.startswith(reason) for r in stored), [r.last_error for r in stored]
        assert received_by(hook, tenant) == []
    after = registry.get_sample_value("sellmesh_handoff_notifications_total", {"outcome": "failed"})
    assert after == failed + 6
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "hooks.example.test" not in logged and "refused: the host resolves to a link-local" in logged
