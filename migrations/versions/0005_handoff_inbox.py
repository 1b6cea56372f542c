"""handoff: the inbox read model (each conversation's recent messages)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "handoff_inbox_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("direction", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_handoff_inbox_event"),
    )
    with op.batch_alter_table("handoff_inbox_messages", schema=None) as batch_op:
        batch_op.create_index("ix_handoff_inbox_conversation", ["tenant_id", "conversation_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("handoff_inbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_handoff_inbox_conversation")
    op.drop_table("handoff_inbox_messages")
