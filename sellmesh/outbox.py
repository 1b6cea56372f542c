"""Transactional outbox: services write events in the same transaction as their state; a relay publishes them."""

import asyncio
import collections
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from faststream.kafka import KafkaBroker
from sqlalchemy import Engine, Text, update
from sqlalchemy import event as sa_event
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import Column, Field, SQLModel

from schemas.envelope import Envelope
from sellmesh.broker import envelope_headers
from sellmesh.db import in_thread
from sellmesh.metrics import OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED, current_handler
from sellmesh.tasks import cancel_and_wait, wait_set

log = logging.getLogger(__name__)


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"

    id: int | None = Field(default=None, primary_key=True)
    producer: str = Field(index=True, max_length=64)
    topic: str = Field(max_length=128)
    key: str = Field(max_length=256)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    headers: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    published_at: datetime | None = Field(default=None, index=True)


@dataclass(frozen=True)
class Pending:
    """One committed, unpublished row as the relay publishes it: plain values, readable without a session."""

    id: int
    producer: str
    topic: str
    key: str
    payload: str
    headers: str
    created_at: datetime


# Relays running in this process, by producer. A commit that queued rows hands them to their relay, which
# publishes them without reading them back; its poll of the table is a safety net (rows of a crashed
# process, or written where no relay runs) and keeps an idle worker from querying twenty times a second.
_RUNNING: dict[str, list["OutboxRelay"]] = {}
PUBLISHED_MEMORY = 10_000
# How long published rows may wait for more before they are marked. A crash in between publishes them again,
# which consumers drop by event id; the memory of published ids keeps this relay from doing so itself.
MARK_DELAY_SECONDS = 0.2
_WRITTEN = "outbox_written"  # session.info: rows written in this transaction, as Pending
_SAVEPOINT_ROLLED_BACK = "outbox_savepoint_rolled_back"


def waves(rows: list[Pending]) -> list[list[Pending]]:
    """Splits rows, in commit order, into waves holding at most one row per topic and key: a wave's rows are
    published together, and a key's next row waits for the wave before it. Order is promised per key, so
    only a row of the same key must not overtake one that failed; rows of other keys may."""
    result: list[list[Pending]] = []
    depth: dict[tuple[str, str], int] = {}
    for row in rows:
        level = depth.get((row.topic, row.key), 0)
        depth[(row.topic, row.key)] = level + 1
        if level == len(result):
            result.append([])
        result[level].append(row)
    return result


# Built once, values bound at execution: SQLAlchemy works out a statement's cache key once per object, and a
# statement built per row with `.values(...)` paid that walk over every value each time.
_OUTBOX = OutboxRow.__table__  # type: ignore[attr-defined]
_INSERT_RETURNING_ID = sa_insert(_OUTBOX).returning(_OUTBOX.c.id)


def add_to_outbox(session: Session, *, topic: str, event: Envelope, key: str) -> None:
    """Queue `event` for publishing; it goes out only if the caller's transaction commits."""
    values: dict[str, Any] = {
        "producer": event.producer,
        "topic": topic,
        "key": key,
        "payload": event.model_dump_json(),
        "headers": json.dumps(envelope_headers(event)),
        "created_at": datetime.now(UTC),
    }
    # A Core INSERT in the caller's transaction, now: the session never reads an outbox row back, and its unit
    # of work cost several times more per row. The id it returns is what the relay publishes the row by.
    row_id = session.execute(_INSERT_RETURNING_ID, values).scalar_one()
    session.info.setdefault(_WRITTEN, []).append(Pending(id=row_id, **values))


@sa_event.listens_for(Session, "after_commit")
def _hand_over(session: Session) -> None:
    """After the commit (in whatever thread ran it): the rows are durable, so their relay may publish them."""
    if session.in_nested_transaction():
        return  # a savepoint released: the transaction around it may still roll back
    written: list[Pending] | None = session.info.pop(_WRITTEN, None)
    if not written:
        return
    by_producer: dict[str, list[Pending]] = {}
    for row in written:
        by_producer.setdefault(row.producer, []).append(row)
    # After a savepoint rolled back, some captured rows may not exist: the relays read the table instead.
    uncertain = session.info.pop(_SAVEPOINT_ROLLED_BACK, False)
    for producer, rows in by_producer.items():
        relay = _relay_of(session, producer)
        if relay is not None and uncertain:
            relay.wake_threadsafe()
        elif relay is not None:
            relay.hand_over_threadsafe(rows)


def _relay_of(session: Session, producer: str) -> "OutboxRelay | None":
    """The relay of `producer` on the database this session wrote to: another engine's relay would publish rows
    its own table does not hold."""
    return next((r for r in _RUNNING.get(producer, ()) if r.engine is session.bind), None)


@sa_event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    if session.in_nested_transaction():
        session.info[_SAVEPOINT_ROLLED_BACK] = True
        return
    _clear(session)


@sa_event.listens_for(Session, "after_transaction_end")
def _transaction_end(session: Session, transaction: SessionTransaction) -> None:
    # Whatever ended the outermost transaction, the next one starts with nothing captured.
    if transaction.parent is None:
        _clear(session)


def _clear(session: Session) -> None:
    written: list[Pending] | None = session.info.pop(_WRITTEN, None)
    session.info.pop(_SAVEPOINT_ROLLED_BACK, None)
    # Rows captured but never handed over: a rollback, or a commit that raised. A commit can land and its answer
    # be lost (the connection dropped), so they may be in the table; the retry finds its work done and writes
    # no rows again, and rows handed over meanwhile would overtake them. Their relays read the table next.
    for producer in {row.producer for row in written or ()}:
        relay = _relay_of(session, producer)
        if relay is not None:
            relay.wake_threadsafe()


class OutboxRelay:
    """Publishes a producer's rows in commit order, then marks them published.

    Rows come from the commits of this process (handed over, not read back) or, when none are waiting,
    from the table. Rows of different keys go out together (`waves`); a key's rows one after another. After a
    failed publish the relay reads only from the table until it has caught up, so a row that failed is never
    overtaken by a later row of its key. A crash between publish and mark republishes the row: consumers
    dedup by event id.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        broker: KafkaBroker,
        producer: str,
        poll_seconds: float = 0.5,
        drain_seconds: float = 5.0,
        batch: int = 100,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.producer = producer
        self.poll_seconds = poll_seconds
        self.drain_seconds = drain_seconds
        self.batch = batch
        self.wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handed: collections.deque[Pending] = collections.deque()
        # Set at start and by a failure: handed rows are in the table too, behind older unpublished ones
        # (a backlog left by the last run, rows that failed), so the table is read until it is drained.
        self._catching_up = True
        # Ids published lately, so a row both handed over and read from the table goes out once.
        self._published: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._unmarked: list[int] = []
        self._read_table = False  # whether the last batch came from the table (which may hold more)
        self._table_read_at = 0.0  # time.monotonic() of the last read of the table
        # created_at of the oldest row seen unpublished; the gauge reads its age at scrape time, so a
        # relay stuck on a broker or database failure shows a growing age rather than a frozen one.
        self._oldest_pending: datetime | None = None

    def oldest_age_seconds(self) -> float:
        oldest = self._oldest_pending
        if oldest is None:
            return 0.0
        if oldest.tzinfo is None:  # SQLite hands back naive datetimes; they were written in UTC
            oldest = oldest.replace(tzinfo=UTC)
        return max(0.0, (datetime.now(UTC) - oldest).total_seconds())

    def _pending(self) -> list[Pending]:
        table = OutboxRow.__table__  # type: ignore[attr-defined]
        query = (
            sa_select(table.c.id, table.c.producer, table.c.topic, table.c.key, table.c.payload, table.c.headers)
            .add_columns(table.c.created_at)
            .where(table.c.producer == self.producer, table.c.published_at.is_(None))
            .order_by(table.c.id)
            .limit(self.batch)
        )
        with self.engine.connect() as connection:
            return [Pending(*row) for row in connection.execute(query)]

    def _mark(self, ids: list[int]) -> None:
        table = OutboxRow.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id.in_(ids)).values(published_at=datetime.now(UTC)))

    async def _next_rows(self) -> list[Pending]:
        # While commits keep handing rows over, the table is still read once a poll: rows nobody handed over (a
        # replica that crashed after its commit, a commit whose answer was lost) go out within a poll, before
        # a row of their key that a later owner of the partition commits.
        table_due = time.monotonic() - self._table_read_at >= self.poll_seconds
        if self._handed and not self._catching_up and not table_due:
            rows = [self._handed.popleft() for _ in range(min(self.batch, len(self._handed)))]
            self._read_table = False
        else:
            self._handed.clear()  # committed, so the table holds them, in order with the rest
            # Marked first, so a read never comes back full of rows that only wait for their mark.
            await self._mark_published()
            rows = await in_thread(self._pending)
            self._table_read_at = time.monotonic()
            self._read_table = True
            # A full read may have left more behind: the table is read until it runs short, or rows handed
            # over meanwhile would overtake the rest.
            self._catching_up = len(rows) == self.batch
        return [row for row in rows if row.id not in self._published]

    async def relay_once(self, *, defer_mark: bool = False) -> int:
        """Publish the next rows and mark them; with `defer_mark` (the run loop) marks wait for a full batch
        while rows keep coming, so a steady stream costs one UPDATE per batch rather than one per commit."""
        rows = await self._next_rows()
        self._oldest_pending = rows[0].created_at if rows else None
        done: list[int] = []
        failed = True
        try:
            for wave in waves(rows):
                await self._publish_wave(wave, done)
            failed = False
        except BaseException:
            self._catching_up = True
            raise
        finally:
            if done:
                OUTBOX_PUBLISHED.labels(self.producer).inc(len(done))
                self._unmarked.extend(done)
            if not defer_mark or failed or not rows or len(self._unmarked) >= self.batch:
                await self._mark_published()
        self._oldest_pending = None
        return len(rows)

    async def _publish_wave(self, wave: list[Pending], done: list[int]) -> None:
        """Hands every row of the wave to the producer before waiting for any, so they share produce requests
        (one round trip for the wave rather than one per row); then waits for each. Rows the broker took are
        `done` even when another failed; the first failure is raised once all are settled."""
        sent: list[tuple[Pending, asyncio.Future[Any]]] = []
        failure: BaseException | None = None
        for row in wave:
            headers = json.loads(row.headers)
            try:
                future = await self.broker.publish(
                    row.payload.encode(),
                    topic=row.topic,
                    key=row.key.encode(),
                    headers=headers,
                    correlation_id=headers.get("correlation_id"),
                    no_confirm=True,
                )
            except Exception as error:  # not connected, too large: the rest of the wave may still go
                failure = failure or error
                continue
            sent.append((row, future))
        for row, future in sent:
            try:
                await future
            except Exception as error:
                failure = failure or error
                continue
            done.append(row.id)
            self._remember(row.id)
        if failure is not None:
            raise failure

    async def _mark_published(self) -> None:
        """Marks what went out; ids a failed mark left behind go with the next one (until then they are skipped)."""
        if not self._unmarked:
            return
        ids, self._unmarked = self._unmarked, []
        try:
            await in_thread(self._mark, ids)
        except BaseException:
            self._unmarked = ids + self._unmarked
            raise

    def _remember(self, row_id: int) -> None:
        self._published[row_id] = None
        if len(self._published) > PUBLISHED_MEMORY:
            self._published.popitem(last=False)

    async def run(self) -> None:
        current_handler.set(f"outbox/{self.producer}")
        while True:
            self.wakeup.clear()
            published = 0
            try:
                published = await self.relay_once(defer_mark=True)
            except Exception:
                log.exception("outbox relay failed; retrying", extra={"producer": self.producer})
                if self._stopping:
                    return
                await asyncio.sleep(1.0)
                continue
            # Handed rows need no second look at the table; a batch read from it may have left more.
            if self._handed or (published and self._read_table):
                continue
            if self._stopping:
                if self._read_table and not self._unmarked:
                    return  # the table had nothing left
                continue
            if self._unmarked:
                # Published but not yet marked: a commit arriving within the delay is marked with them.
                if await self._woken_within(MARK_DELAY_SECONDS):
                    continue
                try:
                    await self._mark_published()
                except Exception:
                    log.exception(
                        "outbox relay could not mark rows published; retrying", extra={"producer": self.producer}
                    )
            await self._woken_within(self.poll_seconds)

    async def _woken_within(self, seconds: float) -> bool:
        return await wait_set(self.wakeup, seconds)

    def start(self) -> None:
        OUTBOX_OLDEST_AGE.labels(self.producer).set_function(self.oldest_age_seconds)
        self._loop = asyncio.get_running_loop()
        _RUNNING.setdefault(self.producer, []).append(self)
        self._task = asyncio.create_task(self.run(), name=f"outbox-{self.producer}")

    def hand_over_threadsafe(self, rows: list[Pending]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._take, rows)

    def wake_threadsafe(self) -> None:
        """Look at the table now (rows were committed that could not be handed over)."""
        self.hand_over_threadsafe([])

    def _take(self, rows: list[Pending]) -> None:
        if not rows:
            # Rows committed that could not be handed over: the next look reads the table, which holds them in
            # order with any rows still in hand, instead of waiting for the hand-overs to run dry.
            self._catching_up = True
        self._handed.extend(rows)
        self.wakeup.set()

    async def stop(self) -> None:
        """Publish what is pending, within `drain_seconds`, then stop.

        Cancelling mid-batch would leave published rows unmarked, to be sent again at the next start.
        """
        self._stopping = True
        self.wakeup.set()
        with contextlib.suppress(ValueError):
            _RUNNING.get(self.producer, []).remove(self)
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), timeout=self.drain_seconds)
        await cancel_and_wait(self._task)
        self._task = None
        self._stopping = False
        self._oldest_pending = None
        self._handed.clear()
