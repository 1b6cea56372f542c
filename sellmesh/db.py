"""The SQLModel engine (SQLite by default, PostgreSQL in production) and the migration runner."""

import asyncio
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeAlias, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import ColumnElement, Connection, Engine, Insert, Table, and_, event, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Mapped
from sqlmodel import Session, SQLModel, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

T = TypeVar("T")


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """One engine per process. `schema` pins PostgreSQL's search_path (tests isolate runs with it)."""
    if url.startswith("sqlite"):
        # hide_parameters: a failed statement's error names its values, and some are secrets (channel tokens).
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL lets the HTTP edge read while a worker writes; busy_timeout waits instead of failing.
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    url = url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
    engine = create_engine(url, pool_size=10, max_overflow=10, connect_args=connect_args, hide_parameters=True)
    ping_when_idle(engine)
    return engine


# A connection handed back less than this long ago is taken as alive without a ping. Under load that saves a
# round trip per transaction (about ten per inbound message). If PostgreSQL restarted meanwhile, the first
# statement on such a connection fails as a disconnect, which makes SQLAlchemy drop every pooled connection, so
# a busy process pays one failed operation per restart, and the subscriber retries it. A connection idle for
# longer is pinged, so occasional callers that do not retry (the owners' API, scripts) never see a stale one.
PING_IDLE_SECONDS = 1.0
_CHECKED_IN = "sellmesh_checked_in"


def ping_when_idle(engine: Engine) -> None:
    """Pre-ping pooled connections only when they have been idle longer than `PING_IDLE_SECONDS`."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        last = record.info.get(_CHECKED_IN)
        if last is None or time.monotonic() - last < PING_IDLE_SECONDS:
            return  # just connected, or in use a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                # The pool discards this connection and checks out another (a fresh one after a restart).
                raise DisconnectionError(str(exc)) from exc
            raise


def row_values(row: SQLModel) -> dict[str, Any]:
    """A table model's column values for a Core INSERT, leaving out a primary key the database assigns."""
    table: Table = type(row).__table__  # type: ignore[attr-defined]
    assigned = {column.name for column in table.primary_key.columns if getattr(row, column.name) is None}
    return row.model_dump(exclude=assigned)


def insert_new(engine: Engine, row: SQLModel) -> bool:
    """Insert one row unless a unique key already holds it; True when it was new.

    One statement in its own transaction (`ON CONFLICT DO NOTHING` on PostgreSQL and SQLite): for append-only
    rows keyed by event id, where an ORM session, a flush and a caught IntegrityError would cost several times more.
    """
    with engine.begin() as connection:
        return insert_unless_present(connection, type(row).__table__, row_values(row))  # type: ignore[attr-defined]


def insert_unless_present(connection: Connection, table: Table, values: dict[str, Any]) -> bool:
    """`INSERT ... ON CONFLICT DO NOTHING` of one row in the connection's transaction; True when the row was new.
    One round trip instead of a read and then a write."""
    # SQLAlchemy reports an INSERT's rowcount only when asked (psycopg's -1 otherwise, which reads as "new").
    result = connection.execute(ignoring_conflicts(connection, table), values, execution_options=_ROWCOUNT)
    return bool(result.rowcount)


_ROWCOUNT = {"preserve_rowcount": True}


def ignoring_conflicts(engine: Engine | Connection, table: Table) -> Insert:
    """`INSERT INTO table ... ON CONFLICT DO NOTHING` without values: execute it with one row's values, or a list
    of them to insert many in one statement."""
    return _ignoring_conflicts(engine.dialect.name, table)


@functools.cache
def _ignoring_conflicts(dialect_name: str, table: Table) -> Insert:
    # One statement object per table and dialect, its values passed at execution: SQLAlchemy works out a statement's
    # cache key once per object, and a new statement with `.values(...)` per row paid that walk over every value
    # each time (about 0.3 ms of a 0.5 ms insert's CPU, measured against PostgreSQL).
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement: Insert = dialect.insert(table).on_conflict_do_nothing()
    return statement


# A column as a query names it: a table's column, or a model's attribute (SQLModel's `col`).
QueryColumn: TypeAlias = ColumnElement[Any] | Mapped[Any]


def after_key(first: QueryColumn, second: QueryColumn, key: tuple[Any, Any]) -> ColumnElement[bool]:
    """Rows that come after `key` in the order (`first`, `second`): the next page of a sweep that pages through a
    table, so rows that never leave it cannot hold every page."""
    return or_(first > key[0], and_(first == key[0], second > key[1]))


def run_migrations(engine: Engine) -> None:
    """Bring the database to the latest schema; safe to run at every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def autocommit(engine: Engine) -> Iterator[Connection]:
    """A connection on which each statement commits on its own: no BEGIN and no COMMIT or ROLLBACK, two round
    trips fewer, for reads and one-statement writes (each statement sees committed rows, as it would in a READ
    COMMITTED transaction)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        yield connection


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


# Threads for blocking database work, as many as anyio's default limit. asyncio's own executor hop costs about
# half the CPU of anyio's `to_thread` (measured: 38 against 93 us a call, 8 at a time), and every handler makes
# several.
DB_THREADS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="sellmesh-db")


async def in_thread(fn: Callable[..., T], *args: Any, undo: Callable[[T], Awaitable[None]] | None = None) -> T:
    """Run blocking database work off the event loop, so one slow query does not stall consumers.

    The work sees the caller's context (log fields, the current handler). A cancelled caller still waits for the
    work to end, since a thread cannot be stopped: clean-up that undoes the work must run after it, not beside it.
    `undo` is that clean-up, given what the work returned, run (shielded) before the cancellation goes on.
    """
    context = contextvars.copy_context()
    work = asyncio.get_running_loop().run_in_executor(DB_THREADS, context.run, fn, *args)
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            try:
                await asyncio.wait({work})
            except asyncio.CancelledError:
                continue
        if undo is not None and not work.cancelled() and work.exception() is None:
            await asyncio.shield(undo(work.result()))
        raise


async def record_durably(fn: Callable[..., T], *args: Any, within: float = 60.0) -> T:
    """Run a write that records something already done outside (a message the Graph API accepted).

    A lost connection is retried here, for up to `within` seconds, instead of failing the handler: the
    handler's retry would do the outside thing a second time.
    """
    deadline = time.monotonic() + within
    delay = 0.1
    while True:
        try:
            return await in_thread(fn, *args)
        except (OperationalError, InterfaceError, DisconnectionError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)
