"""handoff: staff availability, SLA deadlines, escalations and notifications

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TICKET_MOMENTS = ("first_response_due_at", "first_replied_at", "sla_breached_at", "no_staff_escalated_at")


def upgrade() -> None:
    op.create_table(
        "handoff_staff",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("staff_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "staff_id"),
    )
    with op.batch_alter_table("handoff_staff", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_handoff_staff_staff_id"), ["staff_id"], unique=False)

    op.create_table(
        "handoff_notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_handoff_notification_event"),
    )
    with op.batch_alter_table("handoff_notifications", schema=None) as batch_op:
        batch_op.create_index("ix_handoff_notifications_due", ["status", "next_attempt_at"], unique=False)

    with op.batch_alter_table("handoff_tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("correlation_id", sa.Uuid(), nullable=True))
        for name in TICKET_MOMENTS:
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table("gateway_tenants", schema=None) as batch_op:
        # Existing tenants get no secret; the server default fills their rows.
        batch_op.add_column(
            sa.Column("notify_secret", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("gateway_tenants", schema=None) as batch_op:
        batch_op.drop_column("notify_secret")
    with op.batch_alter_table("handoff_tickets", schema=None) as batch_op:
        for name in reversed(TICKET_MOMENTS):
            batch_op.drop_column(name)
        batch_op.drop_column("correlation_id")
    with op.batch_alter_table("handoff_notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_handoff_notifications_due")
    op.drop_table("handoff_notifications")
    with op.batch_alter_table("handoff_staff", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_handoff_staff_staff_id"))
    op.drop_table("handoff_staff")
