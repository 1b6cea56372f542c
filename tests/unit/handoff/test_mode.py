"""The Redis mirror of conversation mode, on a private redis-server: the key others read, and the handler keeping it."""

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import SQLModel

from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff, ResolveHandoff
from sellmesh.db import make_engine
from sellmesh.localredis import LocalRedis
from services.handoff import handlers
from services.handoff.handlers import on_handoff_command
from services.handoff.mirror import conversation_of, reconcile_mode_mirror
from services.handoff.mode import get_mode, handed_back, handed_to_person, hold_human, mode_key, set_mode
from tests.builders import inbound_text, record_inbound

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with LocalRedis() as server:
        yield server.url


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()  # the server is the module's; the reconcile's counts are of one test's keys
    yield client
    await client.aclose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    # A file, not ":memory:": the handler works in a thread, and each thread would get its own memory database.
    engine = make_engine(f"sqlite:///{tmp_path / 'handoff.db'}")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


def _envelope(tenant_id: uuid.UUID) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4(),
        "tenant_id": tenant_id,
        "correlation_id": uuid.uuid4(),
        "occurred_at": AT,
        "producer": "test",
        "conversation_id": "conv-1",
    }


def request_cmd(tenant_id: uuid.UUID) -> RequestHandoff:
    return RequestHandoff.model_validate(
        {
            **_envelope(tenant_id),
            "actor": Actor(kind=ActorKind.AI),
            "reason": HandoffReason.LOW_CONFIDENCE,
            "channel": Channel.MESSENGER,
            "channel_account_id": "page-1",
            "customer_id": "psid-1",
        }
    )


def resolve_cmd(tenant_id: uuid.UUID) -> ResolveHandoff:
    return ResolveHandoff.model_validate({**_envelope(tenant_id), "actor": Actor(kind=ActorKind.OWNER)})


def test_the_key_format_is_the_one_other_services_read() -> None:
    tenant = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
    assert mode_key(tenant, "conv-9") == "mode:0f0e0d0c-0b0a-4908-8706-050403020100:conv-9"


@pytest.mark.asyncio
async def test_a_conversation_without_a_key_is_in_ai_mode(redis: Redis) -> None:
    assert await get_mode(redis, uuid.uuid4(), "conv-1") == "ai"


@pytest.mark.asyncio
async def test_human_mode_is_stored_as_human_and_ai_mode_removes_the_key(redis: Redis) -> None:
    tenant = uuid.uuid4()
    await set_mode(redis, tenant, "conv-1", "human")
    assert await redis.get(f"mode:{tenant}:conv-1") == "human"
    assert await redis.ttl(f"mode:{tenant}:conv-1") == -1
    assert await get_mode(redis, tenant, "conv-1") == "human"
    await set_mode(redis, tenant, "conv-1", "ai")
    assert await redis.exists(f"mode:{tenant}:conv-1") == 0
    assert await get_mode(redis, tenant, "conv-1") == "ai"


@pytest.mark.asyncio
async def test_an_unknown_mode_is_refused(redis: Redis) -> None:
    with pytest.raises(ValueError, match="unknown conversation mode"):
        await set_mode(redis, uuid.uuid4(), "conv-1", "robot")


@pytest.mark.asyncio
async def test_modes_of_two_tenants_do_not_mix(redis: Redis) -> None:
    ours, theirs = uuid.uuid4(), uuid.uuid4()
    await set_mode(redis, ours, "conv-1", "human")
    assert await get_mode(redis, theirs, "conv-1") == "ai"


@pytest.mark.asyncio
async def test_the_handler_mirrors_human_on_open_and_ai_on_resolve(redis: Redis, engine: Engine) -> None:
    tenant = uuid.uuid4()
    await on_handoff_command(request_cmd(tenant), engine=engine, redis=redis)
    assert await get_mode(redis, tenant, "conv-1") == "human"
    await on_handoff_command(resolve_cmd(tenant), engine=engine, redis=redis)
    assert await get_mode(redis, tenant, "conv-1") == "ai"


@pytest.mark.asyncio
async def test_a_redelivered_command_repairs_a_mirror_that_missed_the_commit(redis: Redis, engine: Engine) -> None:
    tenant = uuid.uuid4()
    request = request_cmd(tenant)
    await on_handoff_command(request, engine=engine, redis=redis)
    await redis.delete(mode_key(tenant, "conv-1"))
    await on_handoff_command(request, engine=engine, redis=redis)
    assert await get_mode(redis, tenant, "conv-1") == "human"


@pytest.mark.asyncio
async def test_rebuild_restores_human_conversations_a_fresh_redis_forgot(redis: Redis, engine: Engine) -> None:
    human, resolved = uuid.uuid4(), uuid.uuid4()
    for command in (request_cmd(human), request_cmd(resolved), resolve_cmd(resolved)):
        await on_handoff_command(command, engine=engine, redis=redis)
    await redis.delete(mode_key(human, "conv-1"))
    report = await reconcile_mode_mirror(engine=engine, redis=redis)
    assert (report.human, report.stale_deleted) == (1, 0)
    assert await get_mode(redis, human, "conv-1") == "human"
    assert await redis.pttl(mode_key(human, "conv-1")) == -1
    assert await get_mode(redis, resolved, "conv-1") == "ai"


@pytest.mark.asyncio
async def test_the_reconcile_deletes_a_lasting_human_no_ticket_backs_and_nothing_else(
    redis: Redis, engine: Engine
) -> None:
    """A handback whose key delete failed on every retry left "human" behind: the AI would stay quiet for good."""
    owned, stale, pending = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    await on_handoff_command(request_cmd(owned), engine=engine, redis=redis)
    await set_mode(redis, stale, "conv-1", "human")
    await hold_human(redis, pending, "conv-1", 30)  # a request still on its way to its commit
    await redis.set(f"mode:{stale}:conv-2", "robot")  # not a value anyone reads as human
    await redis.set("mode:not-a-tenant:conv-1", "human")  # not a key anyone reads
    report = await reconcile_mode_mirror(engine=engine, redis=redis)
    assert report.stale_deleted == 1
    assert await get_mode(redis, owned, "conv-1") == "human"
    assert await redis.exists(mode_key(stale, "conv-1")) == 0
    assert await get_mode(redis, pending, "conv-1") == "human"
    assert await redis.get(f"mode:{stale}:conv-2") == "robot"
    assert await redis.get("mode:not-a-tenant:conv-1") == "human"


def test_a_key_names_its_conversation_only_in_the_writers_form() -> None:
    tenant = uuid.UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
    assert conversation_of(mode_key(tenant, "wa:15551234:x")) == (tenant, "wa:15551234:x")
    assert conversation_of(mode_key(tenant, "conv-1").encode()) == (tenant, "conv-1")
    assert conversation_of(f"mode:{str(tenant).upper()}:conv-1") is None
    assert conversation_of(f"mode:{tenant}:") is None
    assert conversation_of(f"mode:{tenant}") is None
    assert conversation_of("turns:x:y") is None


@pytest.mark.asyncio
async def test_a_request_that_never_commits_leaves_only_a_hold_that_lapses(
    redis: Redis, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database is gone for the whole retry budget: neither the request nor the mirror's repair lands."""

    def down(*_: object) -> None:
        raise ConnectionError("database unreachable")

    monkeypatch.setattr(handlers, "apply_command", down)
    monkeypatch.setattr(handlers, "_stored_mode", down)
    tenant, owned = uuid.uuid4(), uuid.uuid4()
    await set_mode(redis, owned, "conv-1", "human")  # a person already owns this one
    for who in (tenant, owned):
        with pytest.raises(ConnectionError):
            await on_handoff_command(request_cmd(who), engine=engine, redis=redis)
    assert await get_mode(redis, tenant, "conv-1") == "human"  # the AI stays quiet while the request retries
    assert 0 < await redis.pttl(mode_key(tenant, "conv-1")) <= handlers.REQUEST_HOLD_SECONDS * 1000
    assert await redis.pttl(mode_key(owned, "conv-1")) == -1  # the hold never puts an expiry on a person's key


@pytest.mark.asyncio
async def test_a_committed_request_makes_its_hold_lasting(redis: Redis, engine: Engine) -> None:
    tenant = uuid.uuid4()
    await on_handoff_command(request_cmd(tenant), engine=engine, redis=redis)
    assert await redis.pttl(mode_key(tenant, "conv-1")) == -1


@pytest.mark.asyncio
async def test_a_redelivered_resolve_writes_the_handback_a_crash_after_its_commit_missed(
    redis: Redis, engine: Engine
) -> None:
    tenant = uuid.uuid4()
    await on_handoff_command(request_cmd(tenant), engine=engine, redis=redis)
    resolve = resolve_cmd(tenant)
    await on_handoff_command(resolve, engine=engine, redis=redis)
    marker = await redis.get(mode_key(tenant, "conv-1"))
    assert handed_back(marker)
    await redis.set(mode_key(tenant, "conv-1"), "human")  # the crash: committed, but the mirror never written
    later = inbound_text(tenant, "conv-1", "one more thing", sent_at=datetime.now(UTC) + timedelta(hours=1))
    record_inbound(engine, later)  # logged after the resolve: the AI's to answer, by its own turn
    await on_handoff_command(resolve, engine=engine, redis=redis)
    assert handed_back(await redis.get(mode_key(tenant, "conv-1")))
    assert not await handed_to_person(redis, tenant, "conv-1", [later.event_id])
