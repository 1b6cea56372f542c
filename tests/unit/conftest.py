"""Fixtures for unit tests: stores run on an in-memory SQLite database built from the table models."""

from collections.abc import Iterator

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
