"""Alembic environment: one migration history for every service's tables (each service owns its own)."""

from alembic import context
from sqlalchemy import create_engine

from sellmesh.tables import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Stand-alone `alembic` use: DATABASE_URL names the database.
        from sellmesh.settings import MeshSettings

        engine = create_engine(
            MeshSettings().effective_database_url.replace("postgresql://", "postgresql+psycopg://", 1)
        )
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=metadata, render_as_batch=True, compare_type=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
