"""A commit hands its outbox rows to the relay, which publishes each one once, in order, without reading it back."""

import asyncio
import json
import random
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from faststream.kafka import KafkaBroker
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, col, select

from schemas.orders import CreateDraft
from schemas.topics import ORDERS_EVENTS
from sellmesh import outbox
from sellmesh.db import in_thread, make_engine, session_scope
from sellmesh.outbox import OutboxRelay, OutboxRow, Pending, add_to_outbox, waves
from tests.builders import order_command, unique_label
from tests.fakes import PublishRecorder

# Far longer than any wait below: a row that goes out in time was handed over, not polled for.
POLL_SECONDS = 120.0


@pytest.fixture
def engine(file_engine: Engine) -> Engine:
    return file_engine


@pytest.fixture
def producer() -> str:
    """A producer of its own, so no relay another test left registered can take this test's rows."""
    return unique_label("handover-test")


def make_relay(engine: Engine, broker: PublishRecorder, producer: str, *, batch: int = 100) -> OutboxRelay:
    return OutboxRelay(
        engine=engine, broker=cast(KafkaBroker, broker), producer=producer, poll_seconds=POLL_SECONDS, batch=batch
    )


def attach(relay: OutboxRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    """Registers `relay` as `start` would, but runs no task: the test drives it with `relay_once`. It is
    left as after a first look that found the table empty, so handed rows go out without a read."""
    relay._loop = asyncio.get_running_loop()
    relay._catching_up = False
    relay._table_read_at = time.monotonic()
    monkeypatch.setitem(outbox._RUNNING, relay.producer, [relay])


def new_event(producer: str) -> CreateDraft:
    event: CreateDraft = order_command(CreateDraft, uuid.uuid4(), uuid.uuid4())
    return event.model_copy(update={"producer": producer})


def queue(session: Session, producer: str) -> uuid.UUID:
    event = new_event(producer)
    add_to_outbox(session, topic=ORDERS_EVENTS, event=event, key=str(event.order_id))
    return event.event_id


def commit(engine: Engine, producer: str, *, count: int = 1) -> list[uuid.UUID]:
    """Commits `count` rows in one transaction; returns their event ids in insertion order."""
    with session_scope(engine) as session:
        return [queue(session, producer) for _ in range(count)]


def commit_around_a_rolled_back_savepoint(engine: Engine, producer: str) -> list[uuid.UUID]:
    """Commits one row, and one more written in a savepoint rolled back; returns the id of the row that stays."""
    with Session(engine) as session:
        kept = [queue(session, producer)]
        session.flush()
        savepoint = session.begin_nested()
        queue(session, producer)
        savepoint.rollback()
        session.commit()
    return kept


def event_ids(rows: list[Pending]) -> list[uuid.UUID]:
    return [uuid.UUID(json.loads(row.payload)["event_id"]) for row in rows]


def unmarked(engine: Engine, producer: str) -> list[int]:
    """Ids of the producer's rows still waiting to be marked published."""
    with Session(engine) as session:
        query = select(OutboxRow).where(OutboxRow.producer == producer, col(OutboxRow.published_at).is_(None))
        return [row.id for row in session.exec(query.order_by(col(OutboxRow.id))) if row.id is not None]


def row_count(engine: Engine, producer: str) -> int:
    with Session(engine) as session:
        return len(session.exec(select(OutboxRow).where(OutboxRow.producer == producer)).all())


async def handed_over() -> None:
    """Lets the loop run the hand-over a commit on this thread scheduled with `call_soon_threadsafe`."""
    await asyncio.sleep(0)


async def drain(relay: OutboxRelay) -> None:
    """Runs the relay until a look finds nothing to publish; a look that keeps finding rows fails the test."""
    for _ in range(20):
        if await relay.relay_once() == 0:
            return
    pytest.fail("the relay never ran out of rows")


async def eventually(condition: Callable[[], bool], *, seconds: float = 3.0) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


async def test_a_committed_row_is_published_and_marked_without_reading_the_table(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    reads = 0
    read_table = relay._pending

    def counted() -> list[Pending]:
        nonlocal reads
        rows = read_table()
        reads += 1  # after the SELECT: a commit from here on cannot be in this read
        return rows

    monkeypatch.setattr(relay, "_pending", counted)
    relay.start()
    try:
        assert await eventually(lambda: reads == 1), "the relay's first look at the table never finished"
        expected = await in_thread(lambda: commit(engine, producer, count=2))
        assert await eventually(lambda: len(broker.published) == 2)
        assert await eventually(lambda: not unmarked(engine, producer)), "published rows were never marked"
        assert broker.event_ids() == expected
        assert reads == 1, "the relay read handed-over rows back from the table"
    finally:
        await relay.stop()
    assert row_count(engine, producer) == 2


async def test_a_row_read_from_the_table_while_its_hand_over_arrives_is_published_once(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = [*commit(engine, producer), *commit(engine, producer), *commit(engine, producer)]
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    relay._loop = asyncio.get_running_loop()
    read_table = relay._pending

    def read_while_commits_hand_over() -> list[Pending]:
        rows = read_table()
        relay.hand_over_threadsafe(rows)  # the commits' after_commit lands while the read is in flight
        return rows

    monkeypatch.setattr(relay, "_pending", read_while_commits_hand_over)
    assert await relay.relay_once() == 3
    assert len(relay._handed) == 3, "the hand-over was not queued: this test no longer covers the overlap"
    monkeypatch.setattr(relay, "_pending", read_table)
    assert await relay.relay_once() == 0
    assert not relay._handed
    assert await relay.relay_once() == 0
    assert broker.event_ids() == expected
    assert unmarked(engine, producer) == []


async def test_a_row_handed_over_after_it_was_published_from_the_table_is_not_published_again(
    engine: Engine, producer: str
) -> None:
    expected = commit(engine, producer, count=2)
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    late = relay._pending()
    assert await relay.relay_once() == 2
    relay._take(late)
    assert await relay.relay_once() == 0
    await drain(relay)
    assert broker.event_ids() == expected
    assert unmarked(engine, producer) == []


@pytest.mark.parametrize("batch", [1, 100])
async def test_a_row_whose_publish_failed_is_never_overtaken_by_a_later_row(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    broker = PublishRecorder(failures=1)
    relay = make_relay(engine, broker, producer, batch=batch)
    attach(relay, monkeypatch)
    first = commit(engine, producer)
    await handed_over()
    assert event_ids(list(relay._handed)) == first
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    later = commit(engine, producer)
    await handed_over()
    assert event_ids(list(relay._handed)) == later
    assert await relay.relay_once() >= 1
    assert broker.event_ids()[:1] == first
    last = commit(engine, producer)  # handed over while the relay is still catching up (batch=1)
    await handed_over()
    await drain(relay)
    assert broker.event_ids() == [*first, *later, *last]
    assert unmarked(engine, producer) == []
    assert not relay._handed


def test_waves_hold_one_row_per_key_and_keep_each_keys_order() -> None:
    def row(row_id: int, key: str, topic: str = ORDERS_EVENTS) -> Pending:
        return Pending(row_id, "p", topic, key, "{}", "{}", datetime.now(UTC))

    rows = [row(1, "a"), row(2, "b"), row(3, "a"), row(4, "a", "other"), row(5, "a"), row(6, "c")]
    assert [[r.id for r in wave] for wave in waves(rows)] == [[1, 2, 4, 6], [3], [5]]
    assert waves([]) == []


async def test_rows_of_different_keys_go_to_the_broker_together(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = PublishRecorder(delay=0.01)
    relay = make_relay(engine, broker, producer)
    attach(relay, monkeypatch)
    expected = commit(engine, producer, count=10)
    await handed_over()
    assert await relay.relay_once() == 10
    # All ten were with the broker before it answered the first, so they could share produce requests.
    assert broker.most_in_flight == 10
    assert broker.event_ids() == expected
    assert unmarked(engine, producer) == []


async def test_a_refused_row_holds_back_its_own_key_only_and_goes_out_first_once_the_broker_takes_it(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    attach(relay, monkeypatch)
    refused = uuid.uuid4()
    with session_scope(engine) as session:
        ids = []
        for key in (refused, uuid.uuid4(), refused, uuid.uuid4()):
            event = new_event(producer)
            add_to_outbox(session, topic=ORDERS_EVENTS, event=event, key=str(key))
            ids.append(event.event_id)
    await handed_over()
    broker.refused_keys = {str(refused).encode()}
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    # The other keys' rows went out and are marked; the refused key's second row was never tried.
    assert broker.event_ids() == [ids[1], ids[3]]
    assert len(unmarked(engine, producer)) == 2
    broker.refused_keys = set()
    await drain(relay)
    assert broker.event_ids() == [ids[1], ids[3], ids[0], ids[2]]
    assert unmarked(engine, producer) == []


async def test_a_row_whose_mark_failed_is_not_republished_and_is_marked_with_the_next_batch(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    attach(relay, monkeypatch)
    failures = 2
    mark = relay._mark

    def flaky_mark(ids: list[int]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise ConnectionError("database went away")
        mark(ids)

    monkeypatch.setattr(relay, "_mark", flaky_mark)
    first = commit(engine, producer)
    await handed_over()
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert broker.event_ids() == first
    [first_id] = unmarked(engine, producer)
    assert relay._unmarked == [first_id]
    # Nothing handed over: the relay reads the table, where the row still looks unpublished.
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    assert broker.event_ids() == first
    assert unmarked(engine, producer) == [first_id]
    later = commit(engine, producer)
    await handed_over()
    assert await relay.relay_once() == 1
    assert broker.event_ids() == [*first, *later]
    assert unmarked(engine, producer) == []
    assert relay._unmarked == []
    await drain(relay)
    assert broker.event_ids() == [*first, *later]


async def test_a_rolled_back_transaction_hands_nothing_over_and_leaves_nothing_for_the_next_one(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    attach(relay, monkeypatch)
    with Session(engine) as session:
        queue(session, producer)
        session.flush()
        queue(session, producer)
        session.rollback()
        await handed_over()
        assert not relay._handed
        # SQLite gives the next row the id the rolled-back one had: a leftover would look like it.
        expected = [queue(session, producer)]
        session.commit()
    await handed_over()
    assert event_ids(list(relay._handed)) == expected
    await drain(relay)
    assert broker.event_ids() == expected
    assert row_count(engine, producer) == 1
    assert unmarked(engine, producer) == []


async def test_rows_flushed_earlier_in_the_transaction_are_handed_over_once_at_commit(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    attach(relay, monkeypatch)
    with Session(engine) as session:
        expected = [queue(session, producer)]
        session.flush()
        await handed_over()
        assert not relay._handed, "a flushed row was handed over before its transaction committed"
        expected.append(queue(session, producer))
        session.flush()
        session.flush()
        expected.append(queue(session, producer))
        session.commit()
    await handed_over()
    assert event_ids(list(relay._handed)) == expected
    reads = 0

    def no_read() -> list[Pending]:
        nonlocal reads
        reads += 1
        return []

    monkeypatch.setattr(relay, "_pending", no_read)
    assert await relay.relay_once() == 3
    assert reads == 0
    assert broker.event_ids() == expected
    assert unmarked(engine, producer) == []


async def test_rows_of_a_transaction_rolled_back_after_a_savepoint_are_never_handed_over(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = make_relay(engine, PublishRecorder(), producer)
    attach(relay, monkeypatch)
    with Session(engine) as session:
        queue(session, producer)
        with session.begin_nested():
            queue(session, producer)
        session.rollback()
    await handed_over()
    assert row_count(engine, producer) == 0
    assert not relay._handed


async def test_after_a_savepoint_rolled_back_the_relay_reads_the_committed_rows_from_the_table(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = make_relay(engine, PublishRecorder(), producer)
    attach(relay, monkeypatch)
    expected = commit_around_a_rolled_back_savepoint(engine, producer)
    await handed_over()
    assert row_count(engine, producer) == 1
    # Which captured rows survived is unknown, so none is handed over; the relay is woken to read the table.
    assert not relay._handed
    assert relay.wakeup.is_set()
    broker = cast(PublishRecorder, relay.broker)
    assert await relay.relay_once() == 1
    assert broker.event_ids() == expected


async def test_rows_that_could_not_be_handed_over_go_out_in_order_with_rows_that_were(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit after a rolled-back savepoint wakes the relay to read the table while rows of an earlier commit
    still wait in hand: the read takes them all, in order, and none waits for the hand-overs to run dry."""
    relay = make_relay(engine, PublishRecorder(), producer)
    attach(relay, monkeypatch)
    first = commit(engine, producer)
    second = commit_around_a_rolled_back_savepoint(engine, producer)
    third = commit(engine, producer)
    await handed_over()
    assert await relay.relay_once() == 3
    assert cast(PublishRecorder, relay.broker).event_ids() == [*first, *second, *third]


async def test_a_commit_on_another_database_is_not_handed_to_this_relay(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    relay = make_relay(engine, PublishRecorder(), producer)
    attach(relay, monkeypatch)
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    SQLModel.metadata.create_all(other)
    try:
        commit(other, producer)
        await handed_over()
        # This relay's table does not hold that row: publishing it from here would be publishing a stranger's.
        assert not relay._handed
        assert await relay.relay_once() == 0
        assert cast(PublishRecorder, relay.broker).event_ids() == []
    finally:
        other.dispose()


async def test_at_start_a_backlog_in_the_table_goes_out_before_rows_handed_over_later(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows a previous run of the process left unpublished, more than one batch of them.
    backlog = commit(engine, producer, count=3)
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer, batch=2)
    relay._loop = asyncio.get_running_loop()
    monkeypatch.setitem(outbox._RUNNING, relay.producer, [relay])
    assert await relay.relay_once() == 2  # the first look reads the table
    later = commit(engine, producer)  # handed over while the backlog is not yet drained
    await handed_over()
    await drain(relay)
    assert broker.event_ids() == [*backlog, *later]
    assert unmarked(engine, producer) == []


async def test_a_stream_of_commits_is_marked_in_one_update_and_a_lone_row_soon_after(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = PublishRecorder()
    relay = make_relay(engine, broker, producer)
    marks: list[list[int]] = []
    mark = relay._mark

    def counted(ids: list[int]) -> None:
        marks.append(list(ids))
        mark(ids)

    monkeypatch.setattr(relay, "_mark", counted)
    relay.start()
    try:
        assert await eventually(lambda: not relay._catching_up), "the relay's first look never finished"
        expected: list[uuid.UUID] = []
        for _ in range(5):
            # Each commit lands well within the mark delay of the one before.
            expected += await in_thread(lambda: commit(engine, producer))
            await asyncio.sleep(outbox.MARK_DELAY_SECONDS / 10)
        assert await eventually(lambda: len(broker.published) == 5)
        assert await eventually(lambda: not unmarked(engine, producer)), "published rows were never marked"
        assert marks == [sorted(marks[0])] and len(marks[0]) == 5, f"expected one mark of all five, got {marks}"
        alone = await in_thread(lambda: commit(engine, producer))
        assert await eventually(lambda: not unmarked(engine, producer), seconds=outbox.MARK_DELAY_SECONDS * 10)
        assert len(marks) == 2
        assert broker.event_ids() == expected + alone
    finally:
        await relay.stop()


@pytest.mark.parametrize("seed", range(8))
async def test_two_replicas_relaying_one_producer_keep_each_keys_order(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Two replicas of a service share one outbox table: A publishes the rows its commits hand it, B reads the table
    (a poll, or catching up). Each may publish the other's rows; whatever the interleaving, the first copy of every
    row of a key reaches the broker in commit order, so a consumer deduplicating by event id sees that order."""
    rng = random.Random(seed)
    broker = PublishRecorder(delay=0.001)
    handed, polling = make_relay(engine, broker, producer, batch=3), make_relay(engine, broker, producer, batch=3)
    attach(handed, monkeypatch)  # polling is not registered: it only ever reads the table
    keys = [f"order-{n}" for n in range(3)]
    committed: dict[str, list[str]] = {key: [] for key in keys}

    def commit_to(key: str) -> None:
        event = new_event(producer)
        with session_scope(engine) as session:
            add_to_outbox(session, topic=ORDERS_EVENTS, event=event, key=key)
        committed[key].append(str(event.event_id))

    for _ in range(12):
        for _ in range(rng.randint(1, 3)):
            commit_to(rng.choice(keys))
        await handed_over()
        runs = [relay.relay_once() for relay in rng.sample([handed, polling], k=rng.randint(1, 2))]
        await asyncio.gather(*runs)
    for relay in (handed, polling):
        await drain(relay)
    first_seen: dict[str, list[str]] = {key: [] for key in keys}
    seen: set[str] = set()
    for payload in broker.published:
        event_id = json.loads(payload)["event_id"]
        if event_id in seen:
            continue
        seen.add(event_id)
        key = next(k for k, ids in committed.items() if event_id in ids)
        first_seen[key].append(event_id)
    assert first_seen == committed


async def test_a_commit_whose_answer_was_lost_is_not_overtaken_by_later_rows_of_its_key(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT lands and the connection drops before its answer: the session raises, nothing is handed over,
    and the retry finds its work done and writes no row again. The row is in the table, and the rows of its
    key committed next must not go out before it."""
    relay = make_relay(engine, PublishRecorder(), producer)
    attach(relay, monkeypatch)
    event = new_event(producer)
    key = str(event.order_id)
    real_commit = engine.dialect.do_commit

    def commit_then_lose_the_answer(connection: Any) -> None:
        real_commit(connection)
        raise sqlite3.OperationalError("connection lost")

    monkeypatch.setattr(engine.dialect, "do_commit", commit_then_lose_the_answer)
    with pytest.raises(OperationalError), session_scope(engine) as session:
        add_to_outbox(session, topic=ORDERS_EVENTS, event=event, key=key)
    monkeypatch.setattr(engine.dialect, "do_commit", real_commit)
    later = [new_event(producer).model_copy(update={"order_id": event.order_id}) for _ in range(2)]
    for next_event in later:
        with session_scope(engine) as session:
            add_to_outbox(session, topic=ORDERS_EVENTS, event=next_event, key=key)
    await handed_over()
    await drain(relay)
    assert cast(PublishRecorder, relay.broker).event_ids() == [event.event_id, *(e.event_id for e in later)]


async def test_rows_nobody_handed_over_go_out_within_a_poll_while_commits_keep_coming(
    engine: Engine, producer: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A replica crashed after committing a row (or a commit's answer was lost): no relay had it handed over. The
    relay here keeps getting rows handed over, and still reads the table once a poll, so the orphan goes out
    before a row of its key committed after that poll."""
    relay = make_relay(engine, PublishRecorder(), producer)
    relay.poll_seconds = 0.05
    attach(relay, monkeypatch)
    crashed = make_engine(f"sqlite:///{tmp_path / 'unit.db'}")  # the same database, as another process sees it
    try:
        orphan = new_event(producer)
        with session_scope(crashed) as session:
            add_to_outbox(session, topic=ORDERS_EVENTS, event=orphan, key=str(orphan.order_id))
    finally:
        crashed.dispose()
    await handed_over()
    assert not relay._handed
    stream = commit(engine, producer)
    await handed_over()
    assert await relay.relay_once() == 1  # handed over: the table was read at attach, a poll ago at most
    await asyncio.sleep(relay.poll_seconds)
    after = new_event(producer).model_copy(update={"order_id": orphan.order_id})
    with session_scope(engine) as session:
        add_to_outbox(session, topic=ORDERS_EVENTS, event=after, key=str(orphan.order_id))
    await handed_over()
    await drain(relay)
    assert cast(PublishRecorder, relay.broker).event_ids() == [*stream, orphan.event_id, after.event_id]
