"""Pooled PostgreSQL connections are pinged only after being idle: a dead idle one is replaced unseen, a busy one
is trusted, and the one failure a restart then costs drops every stale connection at once."""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from sellmesh import db
from sellmesh.db import make_engine

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(pg_schema_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_schema_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pings(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the pings the pool makes."""
    made: list[int] = []
    real = engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        made.append(1)
        return real(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return made


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def terminate(pid: int, url: str) -> None:
    """Kills one backend from a connection of another engine, as a PostgreSQL restart would."""
    other = make_engine(url)
    try:
        with other.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        other.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(engine: Engine, pings: list[int]) -> None:
    for _ in range(5):
        backend_pid(engine)
    assert pings == []


def test_a_dead_connection_idle_past_the_limit_is_replaced_without_an_error(
    engine: Engine, pings: list[int], pg_schema_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = backend_pid(engine)
    terminate(first, pg_schema_url)
    monkeypatch.setattr(db, "PING_IDLE_SECONDS", 0.0)
    assert backend_pid(engine) != first
    assert pings


def test_a_busy_connection_killed_fails_once_and_the_pool_recovers(
    engine: Engine, pg_schema_url: str, pings: list[int]
) -> None:
    first = backend_pid(engine)
    terminate(first, pg_schema_url)
    with pytest.raises(OperationalError):
        backend_pid(engine)
    assert backend_pid(engine) != first
