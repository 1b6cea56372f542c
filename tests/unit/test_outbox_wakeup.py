"""A commit that queues outbox rows wakes its relay at once; the relay's poll is only a safety net."""

import asyncio
import uuid
from typing import cast

import pytest
from faststream.kafka import KafkaBroker
from sqlalchemy import Engine

from schemas.orders import CreateDraft
from schemas.topics import ORDERS_EVENTS
from sellmesh.db import in_thread, session_scope
from sellmesh.outbox import OutboxRelay, add_to_outbox
from tests.builders import order_command
from tests.fakes import PublishRecorder

# Far longer than the waits below: a row that goes out in time was woken for, not polled for.
POLL_SECONDS = 120.0


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    return file_engine


def queue_one(engine: Engine, *, producer: str = "test", commit: bool = True) -> None:
    event = order_command(CreateDraft, uuid.uuid4(), uuid.uuid4()).model_copy(update={"producer": producer})
    with session_scope(engine) as session:
        add_to_outbox(session, topic=ORDERS_EVENTS, event=event, key=str(event.order_id))
        if not commit:
            session.rollback()


async def published_within(recorder: PublishRecorder, count: int, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while len(recorder.published) < count:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_a_committed_row_goes_out_without_waiting_for_the_poll(engine: Engine) -> None:
    recorder = PublishRecorder()
    relay = OutboxRelay(engine=engine, broker=cast(KafkaBroker, recorder), producer="test", poll_seconds=POLL_SECONDS)
    relay.start()
    try:
        await asyncio.sleep(0.1)  # the first, empty look is over; the relay now waits
        await in_thread(queue_one, engine)
        assert await published_within(recorder, 1, seconds=5.0)
        await in_thread(queue_one, engine)
        assert await published_within(recorder, 2, seconds=5.0)
    finally:
        await relay.stop()


async def test_rows_of_another_producer_or_a_rolled_back_transaction_wake_nothing(engine: Engine) -> None:
    recorder = PublishRecorder()
    relay = OutboxRelay(engine=engine, broker=cast(KafkaBroker, recorder), producer="test", poll_seconds=POLL_SECONDS)
    relay.start()
    try:
        await asyncio.sleep(0.1)
        await in_thread(lambda: queue_one(engine, producer="someone-else"))
        await in_thread(lambda: queue_one(engine, commit=False))
        assert not await published_within(recorder, 1, seconds=0.5)
    finally:
        await relay.stop()
    assert recorder.published == []
