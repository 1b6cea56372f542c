"""Transactional outbox: services write events in the same transaction as their state; a relay publishes them."""

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker
from sqlalchemy import Engine, Text
from sqlmodel import Column, Field, Session, SQLModel, col, select

from schemas.envelope import Envelope
from sellmesh.broker import envelope_headers
from sellmesh.db import in_thread, session_scope
from sellmesh.metrics import OUTBOX_PUBLISHED
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


class OutboxRelay:
    """Publishes a producer's unpublished rows in insertion order, then marks them published.

    A crash between publish and mark republishes the row: consumers dedup by event id.
    """

    def __init__(self, *, engine: Engine, broker: KafkaBroker, producer: str, poll_seconds: float = 0.05) -> None:
        self.engine = engine
        self.broker = broker
        self.producer = producer
        self.poll_seconds = poll_seconds
        self.wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

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
        while True:
            try:
                if await self.relay_once():
                    continue
            except Exception:
                log.exception("outbox relay failed; retrying", extra={"producer": self.producer})
                await asyncio.sleep(1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=self.poll_seconds)
            self.wakeup.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-{self.producer}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
