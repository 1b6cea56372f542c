"""catalog commands in the audit trail, and the channel address of an order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A catalog command names a product, not an order: its audit and processed rows have no order.
    with op.batch_alter_table('orders_audit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sku', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.alter_column('order_id', existing_type=sa.Uuid(), nullable=True)

    with op.batch_alter_table('orders_processed_commands', schema=None) as batch_op:
        batch_op.alter_column('order_id', existing_type=sa.Uuid(), nullable=True)

    with op.batch_alter_table('orders_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('channel_account_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.add_column(sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('orders_orders', schema=None) as batch_op:
        batch_op.drop_column('customer_id')
        batch_op.drop_column('channel_account_id')
        batch_op.drop_column('channel')

    with op.batch_alter_table('orders_processed_commands', schema=None) as batch_op:
        batch_op.alter_column('order_id', existing_type=sa.Uuid(), nullable=False)

    with op.batch_alter_table('orders_audit', schema=None) as batch_op:
        batch_op.alter_column('order_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column('sku')
