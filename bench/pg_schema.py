"""A PostgreSQL schema of its own for one run (a bench's, or a test mesh's), dropped afterwards: tables another run
grew, or rows it left, cannot reach it."""

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy

from sellmesh.db import make_engine

PG_URL = os.environ.get("BENCH_PG_URL", "postgresql://127.0.0.1:5432/test")


@contextmanager
def fresh_schema(*, server_url: str = PG_URL, prefix: str = "bench_orders") -> Iterator[str]:
    """A database URL whose search_path is a new PostgreSQL schema of `server_url`'s database, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server_url)
    with admin.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{server_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
