"""A whole mesh in this process over the real broker, Redis and a real database, plus a seeded tenant."""

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine

from schemas.envelope import Channel
from sellmesh.db import session_scope
from sellmesh.localbroker import LocalBroker, free_port
from sellmesh.localredis import LocalRedis
from sellmesh.logging import configure_logging
from sellmesh.mesh import SERVICE_NAMES, Mesh
from sellmesh.settings import MeshSettings
from services.gateway.admin import connect_channel_account, create_tenant
from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import sign
from services.orders.store import upsert_product
from tests.conftest import fresh_pg_schema


@dataclass
class Shop:
    """A seeded tenant with a WhatsApp number, and helpers to talk to the running mesh as Meta would."""

    base_url: str
    engine: Engine
    tenant_id: uuid.UUID
    owner_key: str
    phone_number_id: str
    app_secret: str
    verify_token: str
    http: httpx.AsyncClient

    @property
    def page_id(self) -> str:
        return page_id_of(self.phone_number_id)

    @property
    def instagram_id(self) -> str:
        return instagram_id_of(self.phone_number_id)

    def body(self, customer: str, text: str, message_id: str | None = None) -> bytes:
        return encode(
            whatsapp_text(phone_number_id=self.phone_number_id, customer=customer, text=text, message_id=message_id)
        )

    async def post_webhook(
        self, body: bytes, *, signature: str | None = "sign", headers: dict[str, str] | None = None
    ) -> httpx.Response:
        sent = {"content-type": "application/json", **(headers or {})}
        if signature == "sign":
            sent["x-hub-signature-256"] = sign(body, self.app_secret)
        elif signature is not None:
            sent["x-hub-signature-256"] = signature
        return await self.http.post(f"{self.base_url}/webhooks/meta", content=body, headers=sent)

    async def say(self, customer: str, text: str, message_id: str | None = None) -> str:
        message_id = message_id or f"wamid.{uuid.uuid4().hex}"
        response = await self.post_webhook(self.body(customer, text, message_id))
        assert response.status_code == 200, response.text
        return message_id

    async def replies(self, customer: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.base_url}/sandbox/messages", params={"to": customer})
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    async def wait_for_replies(self, customer: str, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        return await eventually(lambda: self.replies(customer), lambda got: len(got) >= count, within=within)


async def eventually(fetch: Callable[[], Any], ok: Callable[[Any], bool], *, within: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await fetch()
        if ok(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached in {within}s; last value: {value!r}")
        await asyncio.sleep(0.1)


def seed_shop(engine: Engine) -> tuple[uuid.UUID, str, str, str, str]:
    tenant_id, key = create_tenant(engine, name=f"Test Roasters {uuid.uuid4().hex[:4]}")
    with session_scope(engine) as session:
        upsert_product(
            session,
            tenant_id=tenant_id,
            sku="ESP-250",
            name="Espresso beans 250g",
            description="dark roast",
            price_minor=1250,
            currency="EUR",
            stock=40,
        )
        upsert_product(
            session,
            tenant_id=tenant_id,
            sku="MUG-01",
            name="Ceramic mug",
            description="stoneware",
            price_minor=900,
            currency="EUR",
            stock=3,
        )
    phone_number_id = str(uuid.uuid4().int)[:15]
    secret, token = secrets.token_hex(16), secrets.token_urlsafe(8)
    for channel, external_id in (
        (Channel.WHATSAPP, phone_number_id),
        (Channel.MESSENGER, page_id_of(phone_number_id)),
        (Channel.INSTAGRAM, instagram_id_of(phone_number_id)),
    ):
        connect_channel_account(
            engine,
            tenant_id=tenant_id,
            channel=channel,
            external_id=external_id,
            app_secret=secret,
            verify_token=token,
            access_token="tok",
        )
    return tenant_id, key, phone_number_id, secret, token


def page_id_of(phone_number_id: str) -> str:
    return f"9{phone_number_id}"


def instagram_id_of(phone_number_id: str) -> str:
    return f"8{phone_number_id}"


@pytest_asyncio.fixture(scope="package", loop_scope="package", params=["sqlite", "postgresql"])
async def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    """A mesh with a broker, Redis and database of its own: nothing left by another mesh or test run can reach it
    (the outbox rows other tests leave unpublished would otherwise go out at its start, and hold it up)."""
    var_dir: Path = tmp_path_factory.mktemp("var")
    with contextlib.ExitStack() as stack:
        database_url = (
            f"sqlite:///{var_dir / 'mesh.db'}" if request.param == "sqlite" else stack.enter_context(fresh_pg_schema())
        )
        broker = stack.enter_context(LocalBroker(log_path=var_dir / "broker.log"))
        redis = stack.enter_context(LocalRedis())
        settings = MeshSettings(
            kafka_bootstrap_servers=broker.bootstrap_servers,
            kafka_enable_idempotence=False,  # the local broker has no InitProducerId
            redis_url=redis.url,
            database_url=database_url,
            sellmesh_http_port=free_port(),
            sellmesh_var_dir=var_dir,
            sellmesh_retry_base_seconds=0.01,
            agent_quiet_seconds=0.5,
        )
        configure_logging("INFO")  # JSON lines on stderr, shown with a failing test's output
        async with Mesh(settings, SERVICE_NAMES) as running:
            yield running


@pytest.fixture
def kafka_bootstrap(mesh: Mesh) -> str:
    """In end-to-end tests, the topics to read are the running mesh's."""
    assert mesh.settings.kafka_bootstrap_servers is not None
    return mesh.settings.kafka_bootstrap_servers


@pytest_asyncio.fixture(loop_scope="package")
async def shop(mesh: Mesh) -> AsyncIterator[Shop]:
    assert mesh.ctx is not None
    engine = mesh.ctx.engine
    tenant_id, key, phone_number_id, secret, token = await asyncio.to_thread(seed_shop, engine)
    async with httpx.AsyncClient(timeout=10) as http:
        yield Shop(mesh.settings.public_base_url, engine, tenant_id, key, phone_number_id, secret, token, http)


def new_customer() -> str:
    return "1555" + str(uuid.uuid4().int)[:8]
