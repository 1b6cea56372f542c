"""At shutdown the outbox relay publishes what is pending instead of being cancelled mid-batch."""

import asyncio
import uuid
from typing import cast

import pytest
from faststream.kafka import KafkaBroker
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from schemas.orders import CreateDraft
from schemas.topics import ORDERS_EVENTS
from sellmesh.db import session_scope
from sellmesh.outbox import OutboxRelay, OutboxRow, add_to_outbox
from tests.builders import order_command
from tests.fakes import PublishRecorder


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    return file_engine


async def test_stopping_the_relay_publishes_and_marks_every_pending_row_first(engine: Engine) -> None:
    tenant_id = uuid.uuid4()
    with session_scope(engine) as session:
        for _ in range(20):
            event = order_command(CreateDraft, tenant_id, uuid.uuid4())
            add_to_outbox(session, topic=ORDERS_EVENTS, event=event, key=str(event.order_id))
    # A moment per publish, as a real broker takes, so a cancelled relay would stop part-way.
    broker = PublishRecorder(delay=0.01)
    relay = OutboxRelay(engine=engine, broker=cast(KafkaBroker, broker), producer="test", drain_seconds=5.0)
    relay.start()
    await relay.stop()
    assert len(broker.published) == 20
    with Session(engine) as session:
        assert not list(session.exec(select(OutboxRow).where(col(OutboxRow.published_at).is_(None))))


async def test_a_relay_that_cannot_publish_still_stops_within_its_drain_bound(engine: Engine) -> None:
    tenant_id = uuid.uuid4()
    with session_scope(engine) as session:
        event = order_command(CreateDraft, tenant_id, uuid.uuid4())
        add_to_outbox(session, topic=ORDERS_EVENTS, event=event, key=str(event.order_id))
    relay = OutboxRelay(
        engine=engine, broker=cast(KafkaBroker, PublishRecorder(down=True)), producer="test", drain_seconds=5.0
    )
    relay.start()
    started = asyncio.get_running_loop().time()
    await relay.stop()
    assert asyncio.get_running_loop().time() - started < 2.0
    with Session(engine) as session:
        assert len(list(session.exec(select(OutboxRow).where(col(OutboxRow.published_at).is_(None))))) == 1
