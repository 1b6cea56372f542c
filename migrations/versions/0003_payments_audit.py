"""payments: the attempts' audit, the Stripe events seen, the sweep's checkpoints, intent, Connect account, superseded

Revision ID: 0003
Revises: 0002 (orders' catalog commands and channel address)
Create Date: 2026-11-25 18:49:52.714982
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('payments_audit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=False),
    sa.Column('order_id', sa.Uuid(), nullable=False),
    sa.Column('attempt_id', sa.Integer(), nullable=False),
    sa.Column('checkout_session_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('before', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('after', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('stripe_event_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('payments_audit', schema=None) as batch_op:
        batch_op.create_index('ix_payments_audit_order', ['tenant_id', 'order_id', 'id'], unique=False)

    op.create_table('payments_stripe_events',
    sa.Column('stripe_event_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=True),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('object_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('stripe_event_id')
    )
    with op.batch_alter_table('payments_stripe_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payments_stripe_events_tenant_id'), ['tenant_id'], unique=False)

    op.create_table('payments_sweep_checkpoints',
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('tenant_id', sa.Uuid(), nullable=True),
    sa.Column('created_through', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('scope')
    )
    with op.batch_alter_table('payments_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_intent_id', sqlmodel.sql.sqltypes.AutoString(length=256), nullable=True))
        batch_op.add_column(sa.Column('stripe_account', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('superseded', sa.Boolean(), server_default='0', nullable=False))
        batch_op.create_index(batch_op.f('ix_payments_attempts_payment_intent_id'), ['payment_intent_id'], unique=False)
        batch_op.create_index('ix_payments_attempts_status_expires_at', ['status', 'expires_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('payments_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_attempts_status_expires_at')
        batch_op.drop_index(batch_op.f('ix_payments_attempts_payment_intent_id'))
        batch_op.drop_column('superseded')
        batch_op.drop_column('stripe_account')
        batch_op.drop_column('payment_intent_id')

    op.drop_table('payments_sweep_checkpoints')
    with op.batch_alter_table('payments_stripe_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payments_stripe_events_tenant_id'))

    op.drop_table('payments_stripe_events')
    with op.batch_alter_table('payments_audit', schema=None) as batch_op:
        batch_op.drop_index('ix_payments_audit_order')

    op.drop_table('payments_audit')
