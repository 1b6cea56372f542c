"""`insert_new` says whether its row was new, on both databases: the sender's claim depends on that answer."""

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select

from sellmesh.db import insert_new
from services.handoff.inbox import InboxMessageRow

pytestmark = pytest.mark.integration


def _row(tenant: uuid.UUID, event: uuid.UUID, text: str) -> InboxMessageRow:
    return InboxMessageRow(
        tenant_id=tenant,
        conversation_id="c1",
        event_id=event,
        direction="in",
        author="customer",
        text=text,
        at=datetime(2026, 12, 1, tzinfo=UTC),
    )


def test_the_first_insert_is_new_and_a_second_of_the_same_key_is_not(migrated_engine: Engine) -> None:
    tenant, event = uuid.uuid4(), uuid.uuid4()
    assert insert_new(migrated_engine, _row(tenant, event, "first")) is True
    assert insert_new(migrated_engine, _row(tenant, event, "again, other text")) is False
    table = InboxMessageRow.__table__  # type: ignore[attr-defined]
    with migrated_engine.connect() as connection:
        rows = connection.execute(select(table.c.text).where(table.c.tenant_id == tenant)).scalars().all()
        assert rows == ["first"]  # the first write stands
        # Another tenant's row with the same event id is its own row.
        assert insert_new(migrated_engine, _row(uuid.uuid4(), event, "other tenant")) is True
        count = connection.execute(select(func.count()).where(table.c.event_id == event)).scalar_one()
    assert count == 2
