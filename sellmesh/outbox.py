"""Transactional outbox: services write events in the same transaction as their state; a relay publishes them."""

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker
from sqlalchemy import Engine, Text
from sqlalchemy import event as sa_event
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.envelope import Envelope
from sellmesh.broker import envelope_headers
from sellmesh.db import in_thread, session_scope
from sellmesh.metrics import OUTBOX_OLDEST_AGE, OUTBOX_PUBLISHED, current_handler
from sellmesh.tasks import cancel_and_wait

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


# Relays running in this process, by producer. A commit that queued rows wakes its relay at once, so the
# relay's poll is only a safety net (rows another process wrote, a wake-up lost to a restart) and an idle
# worker does not query the database twenty times a second per relay.
_RUNNING: dict[str, list["OutboxRelay"]] = {}


def add_to_outbox(session: Session, *, topic: str, event: Envelope, key: str) -> None:
    """Queue `event` for publishing; it goes out only if the caller's transaction commits."""
    session.add(
        OutboxRow(
            producer=event.producer,
            topic=topic,
            key=key,
            payload=event.model_dump_json(),
            headers=json.dumps({**envelope_headers(event), "correlation_id": str(event.correlation_id)}),
        )
    )
    producers: set[str] = session.info.setdefault("outbox_producers", set())
    if not producers:
        sa_event.listen(session, "after_commit", _wake_relays, once=True)
    producers.add(event.producer)


def _wake_relays(session: Session) -> None:
    """After the commit (in whatever thread ran it): the rows are visible, so their relays look now."""
    for producer in session.info.pop("outbox_producers", ()):
        for relay in _RUNNING.get(producer, ()):
            relay.wake_threadsafe()


class OutboxRelay:
    """Publishes a producer's unpublished rows in insertion order, then marks them published.

    A crash between publish and mark republishes the row: consumers dedup by event id.
    """

    def __init__(
        self,
        *,
        engine: Engine,
        broker: KafkaBroker,
        producer: str,
        poll_seconds: float = 0.5,
        drain_seconds: float = 5.0,
    ) -> None:
        self.engine = engine
        self.broker = broker
        self.producer = producer
        self.poll_seconds = poll_seconds
        self.drain_seconds = drain_seconds
        self.wakeup = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
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

    def _pending(self, limit: int = 100) -> list[OutboxRow]:
        with session_scope(self.engine) as session:
            query = (
                select(OutboxRow)
                .where(OutboxRow.producer == self.producer, col(OutboxRow.published_at).is_(None))
                .order_by(col(OutboxRow.id))
                .limit(limit)
            )
            return list(session.exec(query))

    def _mark(self, ids: list[int]) -> None:
        with session_scope(self.engine) as session:
            for row in session.exec(select(OutboxRow).where(col(OutboxRow.id).in_(ids))):
                row.published_at = datetime.now(UTC)
                session.add(row)

    async def relay_once(self) -> int:
        rows = await in_thread(self._pending)
        self._oldest_pending = rows[0].created_at if rows else None
        for row in rows:
            headers = json.loads(row.headers)
            await self.broker.publish(
                row.payload.encode(),
                topic=row.topic,
                key=row.key.encode(),
                headers=headers,
                correlation_id=headers.get("correlation_id"),
            )
        if rows:
            await in_thread(self._mark, [r.id for r in rows if r.id is not None])
            OUTBOX_PUBLISHED.labels(self.producer).inc(len(rows))
        return len(rows)

    async def run(self) -> None:
        current_handler.set(f"outbox/{self.producer}")
        while True:
            try:
                if await self.relay_once():
                    continue
            except Exception:
                log.exception("outbox relay failed; retrying", extra={"producer": self.producer})
                if self._stopping:
                    return
                await asyncio.sleep(1.0)
            # Once stopping, return as soon as nothing is pending.
            if self._stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=self.poll_seconds)
            self.wakeup.clear()

    def start(self) -> None:
        OUTBOX_OLDEST_AGE.labels(self.producer).set_function(self.oldest_age_seconds)
        self._loop = asyncio.get_running_loop()
        _RUNNING.setdefault(self.producer, []).append(self)
        self._task = asyncio.create_task(self.run(), name=f"outbox-{self.producer}")

    def wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.wakeup.set)

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
