"""Order commands per second through the real broker and PostgreSQL, against plain inserts of the same rows.

One `sellmesh run orders` process on the local broker and Redis, its DATABASE_URL a fresh schema of
PostgreSQL at 127.0.0.1:5432/test (BENCH_PG_URL), dropped at the end. N commands, create_draft then
add_item for N/2 fresh orders, keyed by order id:
- "plain inserts": the rows those commands write (order, line, processed command, audit, outbox) with
  SQLAlchemy Core, one transaction per command, into copies of the orders tables in the same schema;
- "commands end to end": published at once with aiokafka, from the first send until every outcome is
  read back from orders.events.v1 (consume, dedup, decide, commit state + audit + outbox, relay).
"""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import Column, Engine, Index, MetaData, Table, UniqueConstraint, func
from sqlmodel import col, select

from bench.pg_schema import fresh_schema
from bench.processes import SELLMESH, server
from schemas.envelope import Actor, ActorKind
from schemas.orders import AddItem, CreateDraft
from schemas.topics import ORDERS_COMMANDS, ORDERS_EVENTS
from sellmesh import tables
from sellmesh.broker import envelope_headers
from sellmesh.db import make_engine, run_migrations, session_scope
from sellmesh.localbroker import free_port
from sellmesh.outbox import OutboxRow
from services.orders.store import upsert_product

SKU = "BENCH-1"
WARMUP_ORDERS = 5
Row = dict[str, float | int | str]


def row(name: str, count: int, seconds: float) -> Row:
    return {"name": name, "count": count, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)}


Command = CreateDraft | AddItem


def make_commands(tenant_id: uuid.UUID, orders: int) -> list[Command]:
    """create_draft then add_item for each of `orders` fresh orders, with fresh command ids."""
    actor = Actor(kind=ActorKind.AI, id="bench")
    out: list[Command] = []
    for _ in range(orders):
        order_id = uuid.uuid4()
        draft_id, add_id = uuid.uuid4(), uuid.uuid4()
        common: dict[str, Any] = {"tenant_id": tenant_id, "producer": "bench", "order_id": order_id, "actor": actor}
        out.append(CreateDraft(event_id=draft_id, correlation_id=draft_id, occurred_at=datetime.now(UTC), **common))
        out.append(
            AddItem(
                event_id=add_id, correlation_id=add_id, occurred_at=datetime.now(UTC), sku=SKU, quantity=2, **common
            )
        )
    return out


def plain_copies(metadata: MetaData) -> dict[str, Table]:
    """The orders tables and the outbox again under `bench_` names: same columns, keys and indexes, no FKs."""
    copies: dict[str, Table] = {}
    for name in ("orders_orders", "orders_lines", "orders_processed_commands", "orders_audit", "outbox"):
        source = tables.metadata.tables[name]
        columns = [Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in source.columns]
        copy = Table(f"bench_{source.name}", metadata, *columns)
        for index in source.indexes:
            Index(f"bench_{index.name}", *(copy.c[c.name] for c in index.columns), unique=bool(index.unique))
        for constraint in source.constraints:
            if isinstance(constraint, UniqueConstraint):
                UniqueConstraint(*(copy.c[c.name] for c in constraint.columns), name=f"bench_{constraint.name}")
        copies[source.name] = copy
    return copies


def plain_inserts(engine: Engine, batch: list[Command]) -> float:
    """The rows each command writes, inserted with Core, one transaction per command; returns seconds."""
    metadata = MetaData()
    t = plain_copies(metadata)
    metadata.create_all(engine)
    payload = json.dumps({"padding": "x" * 900})  # about the size of an outcome event
    now = datetime.now(UTC)
    started = time.perf_counter()
    for command in batch:
        common = {"tenant_id": command.tenant_id, "order_id": command.order_id}
        with engine.begin() as conn:
            if isinstance(command, CreateDraft):
                order = {"state": "draft", "version": 1, "currency": "XXX", "total_minor": 0, "customer": {}}
                conn.execute(t["orders_orders"].insert(), {**common, **order, "created_at": now, "updated_at": now})
            else:
                line = {"position": 0, "sku": SKU, "name": "Bench", "quantity": 2, "unit_price_minor": 1250}
                conn.execute(t["orders_lines"].insert(), {**common, **line, "currency": "EUR"})
            message = {"message_id": command.event_id}
            conn.execute(t["orders_processed_commands"].insert(), {**common, **message, "processed_at": now})
            audit = {"correlation_id": command.correlation_id, "actor_kind": "ai", "actor_id": "bench"}
            audit |= {"action": command.type, "outcome": "accepted", "detail": "", "at": now}
            conn.execute(t["orders_audit"].insert(), {**common, **message, **audit})
            outbox = {"producer": "orders", "topic": ORDERS_EVENTS, "key": str(command.order_id), "headers": "{}"}
            conn.execute(t["outbox"].insert(), {**outbox, "payload": payload, "created_at": now})
    return time.perf_counter() - started


def seed(database_url: str) -> uuid.UUID:
    engine = make_engine(database_url)
    run_migrations(engine)
    tenant_id = uuid.uuid4()
    with session_scope(engine) as session:
        upsert_product(
            session,
            tenant_id=tenant_id,
            sku=SKU,
            name="Bench",
            description="",
            price_minor=1250,
            currency="EUR",
            stock=None,
        )
    engine.dispose()
    return tenant_id


def wait_published(database_url: str, count: int, *, within: float) -> None:
    """Block until the orders relay has published `count` outbox rows (the warm-up's outcomes)."""
    engine = make_engine(database_url)
    query = select(func.count()).select_from(OutboxRow).where(col(OutboxRow.published_at).is_not(None))
    deadline = time.monotonic() + within
    try:
        while True:
            with engine.connect() as conn:
                if int(conn.execute(query).scalar_one()) >= count:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"orders published fewer than {count} events in {within}s")
            time.sleep(0.1)
    finally:
        engine.dispose()


async def publish(bootstrap: str, batch: list[Command]) -> None:
    """Send every command, keyed by its order like the agent and gateway do, and wait for all acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        acks = []
        for command in batch:
            headers = [(name, value.encode()) for name, value in envelope_headers(command).items()]
            value, key = command.model_dump_json().encode(), str(command.order_id).encode()
            acks.append(await producer.send(ORDERS_COMMANDS, value=value, key=key, headers=headers))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def outcomes(consumer: AIOKafkaConsumer, ids: set[str]) -> int:
    """Read orders.events.v1 until an outcome for every command id in `ids` arrived; returns rejections."""
    rejected = 0
    while ids:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            for record in records:
                event: dict[str, Any] = json.loads(record.value or b"{}")
                if event.get("command_id") in ids:
                    ids.discard(event["command_id"])
                    rejected += event.get("type") == "command_rejected"
    return rejected


async def orders_commands(*, infra_env: dict[str, str], work_dir: Path, commands: int) -> list[Row]:
    bootstrap = infra_env["KAFKA_BOOTSTRAP_SERVERS"]
    with fresh_schema() as database_url:
        tenant_id = await asyncio.to_thread(seed, database_url)
        batch = make_commands(tenant_id, max(1, commands // 2))
        engine = make_engine(database_url)
        try:
            plain_seconds = await asyncio.to_thread(plain_inserts, engine, batch)
        finally:
            engine.dispose()
        port = free_port()
        env = {
            **infra_env,
            "DATABASE_URL": database_url,
            "SELLMESH_HTTP_PORT": str(port),
            "SELLMESH_LOG_LEVEL": "WARNING",
        }
        with server([SELLMESH, "run", "orders"], port=port, env=env, log=work_dir / "orders.log"):
            # Until the consumer group has joined, nothing is consumed: warm up before timing.
            warmup = make_commands(tenant_id, WARMUP_ORDERS)
            await publish(bootstrap, warmup)
            await asyncio.to_thread(wait_published, database_url, len(warmup), within=120)
            consumer = AIOKafkaConsumer(ORDERS_EVENTS, bootstrap_servers=bootstrap, auto_offset_reset="latest")
            await consumer.start()
            try:
                await consumer.getmany(timeout_ms=500)  # assigned and positioned at the end before the first send
                started = time.perf_counter()
                await publish(bootstrap, batch)
                async with asyncio.timeout(600):
                    rejected = await outcomes(consumer, {str(c.event_id) for c in batch})
                seconds = time.perf_counter() - started
            finally:
                await consumer.stop()
    if rejected:
        raise RuntimeError(f"{rejected} of {len(batch)} commands were rejected")
    return [
        row("orders: plain inserts of the same rows (Core, 1 tx per command)", len(batch), plain_seconds),
        row("orders: commands end to end (broker, orders, PostgreSQL)", len(batch), seconds),
    ]
