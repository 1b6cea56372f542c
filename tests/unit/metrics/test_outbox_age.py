"""The outbox gauge shows how long the oldest unpublished row has waited, and keeps growing while the relay is stuck."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from sellmesh.db import session_scope
from sellmesh.outbox import OutboxRelay, OutboxRow
from tests.fakes import PublishRecorder


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    return file_engine


def add_row(engine: Engine, *, age: timedelta) -> None:
    with session_scope(engine) as session:
        session.add(
            OutboxRow(
                producer="orders",
                topic="orders.events.v1",
                key="k",
                payload="{}",
                headers="{}",
                created_at=datetime.now(UTC) - age,
            )
        )


async def test_a_relay_that_cannot_publish_reports_the_age_of_the_oldest_row(engine: Engine) -> None:
    add_row(engine, age=timedelta(minutes=5))
    add_row(engine, age=timedelta(minutes=1))
    relay = OutboxRelay(engine=engine, broker=PublishRecorder(down=True), producer="orders")  # type: ignore[arg-type]
    assert relay.oldest_age_seconds() == 0.0
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert 299 <= relay.oldest_age_seconds() <= 330


async def test_the_age_drops_to_zero_once_everything_is_published(engine: Engine) -> None:
    add_row(engine, age=timedelta(minutes=5))
    broker = PublishRecorder(down=True)
    relay = OutboxRelay(engine=engine, broker=broker, producer="orders")  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    broker.down = False
    assert await relay.relay_once() == 1
    assert await relay.relay_once() == 0
    assert relay.oldest_age_seconds() == 0.0
