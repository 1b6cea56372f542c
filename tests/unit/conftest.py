"""Fixtures for unit tests: stores run on an in-memory SQLite database built from the table models."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import SQLModel

import sellmesh.tables  # noqa: F401  (registers every table on the metadata)
from sellmesh.db import make_engine


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = make_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def file_engine(tmp_path: Path) -> Iterator[Engine]:
    """A SQLite file, not memory: code that reads from worker threads (relays, `in_thread`) or from a second
    connection while another is mid-transaction needs one database they all share."""
    engine = make_engine(f"sqlite:///{tmp_path / 'unit.db'}")
    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()
