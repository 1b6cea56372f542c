"""payments: the return URLs each checkout attempt asks Stripe with, kept with its expiry

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a plan kept before this revision has no URLs, and its retries send the tenant's current ones.
    with op.batch_alter_table("payments_checkout_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("success_url", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True))
        batch_op.add_column(sa.Column("cancel_url", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments_checkout_plans", schema=None) as batch_op:
        batch_op.drop_column("cancel_url")
        batch_op.drop_column("success_url")
