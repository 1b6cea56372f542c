"""agent: model usage per turn (tokens and cost per tenant and conversation)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost_usd", sa.Float(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("agent_usage", schema=None) as batch_op:
        batch_op.create_index("ix_agent_usage_tenant_at", ["tenant_id", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("agent_usage", schema=None) as batch_op:
        batch_op.drop_index("ix_agent_usage_tenant_at")
    op.drop_table("agent_usage")
