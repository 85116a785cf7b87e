"""fulfilment: payment processing, subscriptions and invites

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('payments', sa.Column('fulfilled_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('payments', sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('invites', sa.Column('used_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('invites', sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index('ix_invites_invoice_id', 'invites', ['invoice_id'], unique=False)
    op.create_index('ix_invites_chat_id_user_id', 'invites', ['chat_id', 'user_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_invites_chat_id_user_id', table_name='invites')
    op.drop_index('ix_invites_invoice_id', table_name='invites')
    op.drop_column('invites', 'revoked_at')
    op.drop_column('invites', 'used_at')
    op.drop_column('payments', 'checked_at')
    op.drop_column('payments', 'fulfilled_at')
