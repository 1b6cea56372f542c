"""payments: the Stripe Connect account each checkout attempt asks, kept with its expiry and return URLs

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 18:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable: a plan kept before this revision has no account, and its retries send to the tenant's current one.
    with op.batch_alter_table("payments_checkout_plans", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_account", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payments_checkout_plans", schema=None) as batch_op:
        batch_op.drop_column("stripe_account")
