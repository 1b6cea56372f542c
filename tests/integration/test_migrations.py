"""The Alembic history builds exactly the tables the code declares, on PostgreSQL and on SQLite."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect

from sellmesh.db import run_migrations
from sellmesh.tables import metadata

pytestmark = pytest.mark.integration


def test_migrations_match_the_declared_tables(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_every_owned_table_has_a_tenant_column(migrated_engine: Engine) -> None:
    inspector = inspect(migrated_engine)
    tenantless = {"gateway_tenants", "outbox", "alembic_version"}
    for table in inspector.get_table_names():
        if table not in tenantless:
            assert "tenant_id" in {c["name"] for c in inspector.get_columns(table)}, table


def test_migrating_twice_is_harmless(migrated_engine: Engine) -> None:
    run_migrations(migrated_engine)
