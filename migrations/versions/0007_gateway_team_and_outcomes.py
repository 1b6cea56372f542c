"""gateway: team members, key owners, command outcomes, conversations and handoff openings

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 21:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "gateway_team_members",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", _text(length=200), nullable=False),
        sa.Column("email", _text(length=254), nullable=False),
        sa.Column("role", _text(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["gateway_tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_gateway_team_members_tenant_id", "gateway_team_members", ["tenant_id"])
    with op.batch_alter_table("gateway_api_keys") as batch_op:
        batch_op.add_column(sa.Column("member_id", sa.Uuid(), nullable=True))
        batch_op.create_index("ix_gateway_api_keys_member_id", ["member_id"])
    op.create_table(
        "gateway_command_outcomes",
        sa.Column("command_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("topic", _text(length=64), nullable=False),
        sa.Column("command_type", _text(length=32), nullable=False),
        sa.Column("target", _text(length=256), nullable=False),
        sa.Column("actor_kind", _text(length=16), nullable=False),
        sa.Column("actor_id", _text(length=128), nullable=False),
        sa.Column("status", _text(length=16), nullable=False),
        sa.Column("event_type", _text(length=32), nullable=True),
        sa.Column("reason", _text(length=64), nullable=True),
        sa.Column("detail", _text(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("command_id"),
    )
    op.create_index("ix_gateway_command_outcomes_tenant_id", "gateway_command_outcomes", ["tenant_id"])
    op.create_table(
        "gateway_conversations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", _text(length=256), nullable=False),
        sa.Column("channel", _text(length=16), nullable=False),
        sa.Column("channel_account_id", _text(length=256), nullable=False),
        sa.Column("customer_id", _text(length=256), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("last_event_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "conversation_id"),
    )
    op.create_index("ix_gateway_conversations_started", "gateway_conversations", ["tenant_id", "started_at"])
    op.create_table(
        "gateway_handoff_openings",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("conversation_id", _text(length=256), nullable=False),
        sa.Column("reason", _text(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_gateway_handoff_openings_at", "gateway_handoff_openings", ["tenant_id", "at"])


def downgrade() -> None:
    op.drop_index("ix_gateway_handoff_openings_at", table_name="gateway_handoff_openings")
    op.drop_table("gateway_handoff_openings")
    op.drop_index("ix_gateway_conversations_started", table_name="gateway_conversations")
    op.drop_table("gateway_conversations")
    op.drop_index("ix_gateway_command_outcomes_tenant_id", table_name="gateway_command_outcomes")
    op.drop_table("gateway_command_outcomes")
    with op.batch_alter_table("gateway_api_keys") as batch_op:
        batch_op.drop_index("ix_gateway_api_keys_member_id")
        batch_op.drop_column("member_id")
    op.drop_index("ix_gateway_team_members_tenant_id", table_name="gateway_team_members")
    op.drop_table("gateway_team_members")
