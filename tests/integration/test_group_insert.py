"""Rows inserted at once by concurrent handlers share one transaction, on SQLite and PostgreSQL, and a row that
cannot be written fails only its own handler."""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, select

from sellmesh.db import row_values
from sellmesh.group_insert import GroupInsert
from services.agent.model_call import Usage
from services.agent.store import AgentUsage
from services.agent.usage import usage_row, usage_writer
from services.handoff.inbox import InboxMessageRow
from tests.builders import inbound_text

pytestmark = pytest.mark.integration
TABLE = InboxMessageRow.__table__  # type: ignore[attr-defined]


def _values(tenant: uuid.UUID, text: str, *, event_id: uuid.UUID | None = None) -> dict[str, Any]:
    row = InboxMessageRow(
        tenant_id=tenant,
        conversation_id="c1",
        event_id=event_id or uuid.uuid4(),
        direction="in",
        author="customer",
        text=text,
        at=datetime(2026, 12, 1, tzinfo=UTC),
    )
    return row_values(row)


def _texts(engine: Engine, tenant: uuid.UUID) -> list[str]:
    with engine.connect() as connection:
        query = select(TABLE.c.text).where(TABLE.c.tenant_id == tenant).order_by(TABLE.c.text)
        return list(connection.execute(query).scalars())


async def test_rows_handed_in_together_are_written_in_one_transaction(migrated_engine: Engine) -> None:
    tenant = uuid.uuid4()
    writer = GroupInsert(migrated_engine, TABLE)
    await asyncio.gather(*(writer.insert(_values(tenant, f"m{i:02}")) for i in range(20)))
    assert _texts(migrated_engine, tenant) == [f"m{i:02}" for i in range(20)]
    assert writer.transactions == 1
    # One after another, each waits for its own commit: a handler returns only once its row is there.
    for i in range(3):
        await writer.insert(_values(tenant, f"z{i}"))
        assert f"z{i}" in _texts(migrated_engine, tenant)
    assert writer.transactions == 4


async def test_a_row_already_there_or_twice_in_a_group_is_written_once(migrated_engine: Engine) -> None:
    tenant, repeated = uuid.uuid4(), uuid.uuid4()
    writer = GroupInsert(migrated_engine, TABLE)
    await writer.insert(_values(tenant, "first", event_id=repeated))
    await asyncio.gather(
        writer.insert(_values(tenant, "again", event_id=repeated)),
        writer.insert(_values(tenant, "and again", event_id=repeated)),
        writer.insert(_values(tenant, "other")),
    )
    assert _texts(migrated_engine, tenant) == ["first", "other"]


async def test_a_row_that_cannot_be_written_fails_only_its_own_caller(migrated_engine: Engine) -> None:
    tenant = uuid.uuid4()
    writer = GroupInsert(migrated_engine, TABLE)
    broken = {**_values(tenant, "broken"), "text": None}  # NOT NULL
    outcomes = await asyncio.gather(
        writer.insert(_values(tenant, "a")),
        writer.insert(broken),
        writer.insert(_values(tenant, "b")),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], Exception) and "null" in str(outcomes[1]).lower()
    assert _texts(migrated_engine, tenant) == ["a", "b"]


async def test_a_lost_database_fails_every_caller_and_the_next_rows_go_through(migrated_engine: Engine) -> None:
    tenant = uuid.uuid4()
    writer = GroupInsert(migrated_engine, TABLE)
    real_write = writer._write
    calls = 0

    def down(rows: list[dict[str, Any]]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("database is down")

    writer._write = down  # type: ignore[method-assign]
    outcomes = await asyncio.gather(
        *(writer.insert(_values(tenant, f"x{i}")) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    assert calls == 4  # the group, then each row alone
    writer._write = real_write  # type: ignore[method-assign]
    await writer.insert(_values(tenant, "after"))
    assert _texts(migrated_engine, tenant) == ["after"]


async def test_a_cancelled_caller_does_not_stop_the_others(migrated_engine: Engine) -> None:
    tenant = uuid.uuid4()
    writer = GroupInsert(migrated_engine, TABLE)
    first = asyncio.create_task(writer.insert(_values(tenant, "cancelled")))
    second = asyncio.create_task(writer.insert(_values(tenant, "kept")))
    await asyncio.sleep(0)
    first.cancel()
    await second
    with pytest.raises(asyncio.CancelledError):
        await first
    # The cancelled caller's row may be there or not (its redelivery inserts nothing); the other one is.
    assert "kept" in _texts(migrated_engine, tenant)


async def test_usage_rows_of_turns_answered_together_share_one_transaction(migrated_engine: Engine) -> None:
    # No unique key on this table: each row is its own, with the id the database gives it.
    tenant = uuid.uuid4()
    writer = usage_writer(migrated_engine)
    turns = [inbound_text(tenant, f"conversation-{i}", "hello") for i in range(6)]
    rows = [usage_row(turn, "offline", Usage(calls=i + 1)) for i, turn in enumerate(turns)]
    await asyncio.gather(*(writer.insert(row) for row in rows))
    assert writer.transactions == 1
    table = AgentUsage.__table__  # type: ignore[attr-defined]
    with migrated_engine.connect() as connection:
        query = select(table.c.id, table.c.conversation_id, table.c.calls).where(table.c.tenant_id == tenant)
        written = sorted(connection.execute(query).all(), key=lambda row: row.calls)
    assert [(row.conversation_id, row.calls) for row in written] == [(f"conversation-{i}", i + 1) for i in range(6)]
    assert len({row.id for row in written}) == 6


async def test_usage_rows_whose_group_failed_after_its_commit_are_not_written_twice(migrated_engine: Engine) -> None:
    # The commit landed and its answer was lost: writing the rows again one by one would count them twice.
    tenant = uuid.uuid4()
    writer = usage_writer(migrated_engine)
    real_write = writer._write

    def committed_then_lost(rows: list[dict[str, Any]]) -> None:
        real_write(rows)
        raise ConnectionError("connection lost after COMMIT")

    writer._write = committed_then_lost  # type: ignore[method-assign]
    rows = [usage_row(inbound_text(tenant, f"c{i}", "hi"), "offline", Usage(calls=1)) for i in range(3)]
    outcomes = await asyncio.gather(*(writer.insert(row) for row in rows), return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
    table = AgentUsage.__table__  # type: ignore[attr-defined]
    with migrated_engine.connect() as connection:
        written = connection.execute(select(table.c.conversation_id).where(table.c.tenant_id == tenant)).scalars()
        assert sorted(written) == ["c0", "c1", "c2"]
