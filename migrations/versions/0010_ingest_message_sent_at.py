"""ingest: an inbound message's time by the channel, which Meta's 24-hour window counts from

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and not backfilled: a row without it falls back to its log time, as every row did before.
    with op.batch_alter_table("ingest_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ingest_messages", schema=None) as batch_op:
        batch_op.drop_column("sent_at")
