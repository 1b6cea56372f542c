"""Shared fixtures: the real local broker, this machine's Redis and PostgreSQL, and SQLite."""

import os

# Before anything imports litellm: without it, importing litellm reaches for the network.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Every mesh the tests start (in process or as `sellmesh run`) joins its groups in about 3 s instead of 5 s.
os.environ.setdefault("KAFKA_SESSION_TIMEOUT_MS", "6000")

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import Engine

from bench.pg_schema import fresh_schema
from sellmesh.db import make_engine, run_migrations
from sellmesh.localbroker import LocalBroker
from sellmesh.localredis import LocalRedis

PG_URL = os.environ.get("SELLMESH_TEST_PG_URL", "postgresql://127.0.0.1:5432/test")
REDIS_URL = os.environ.get("SELLMESH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# `make test` runs the suite in several pytest-xdist workers (gw0, gw1, ...). Each has its own broker, SQLite
# file and PostgreSQL schema already; this gives each its own Redis database too, so that a test that clears
# every dedup mark, say, clears only its own worker's.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
REDIS_DATABASE = int(_WORKER.removeprefix("gw")) + 1 if _WORKER else 0


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _require(service: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    # In CI these services are part of the machine: their absence is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"{service} is not reachable at {host}:{port}")
    pytest.skip(f"{service} not reachable at {host}:{port}")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    with LocalBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if _reachable("127.0.0.1", 6379):
        yield urlsplit(REDIS_URL)._replace(path=f"/{REDIS_DATABASE}").geturl() if _WORKER else REDIS_URL
        return
    with LocalRedis() as local:
        yield local.url


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@contextlib.contextmanager
def fresh_pg_schema() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped on exit."""
    _require("PostgreSQL", "127.0.0.1", 5432)
    with fresh_schema(server_url=PG_URL, prefix="sm_test") as url:
        yield url


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped at the end of the run."""
    with fresh_pg_schema() as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('db') / 'sellmesh.db'}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_schema_url")
    return url


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database migrated with the project's Alembic history (not create_all)."""
    engine = make_engine(database_url)
    run_migrations(engine)
    yield engine
    engine.dispose()
