"""gateway: what a command sent under an idempotency key asked for, and when the broker took each command

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gateway_command_outcomes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("gateway_command_outcomes", schema=None) as batch_op:
        batch_op.drop_column("published_at")
        batch_op.drop_column("request_hash")
