"""stars: Telegram Stars payments, held shares, Stars prices, payment methods, support, legal texts

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('legal_texts',
    sa.Column('name', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("name IN ('privacy', 'terms')", name=op.f('ck_legal_texts_known_name')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_legal_texts'))
    )
    op.create_table('star_reconciliations',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('telegram_count', sa.Integer(), nullable=False),
    sa.Column('differences', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_star_reconciliations'))
    )
    op.create_table('support_requests',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('payment_ref', sa.String(length=64), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_support_requests_channel_id_channels'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_support_requests'))
    )
    op.create_index(op.f('ix_support_requests_user_id'), 'support_requests', ['user_id'], unique=False)
    op.create_table('star_payments',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('charge_id', sa.String(length=255), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('stars', sa.BigInteger(), nullable=False),
    sa.Column('payload', sa.String(length=255), nullable=False),
    sa.Column('invoice_id', sa.String(length=36), nullable=True),
    sa.Column('payment_id', sa.BigInteger(), nullable=True),
    sa.Column('is_recurring', sa.Boolean(), nullable=False),
    sa.Column('subscription_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.Enum('fulfilled', 'review', 'refunded', name='starpaymentstatus', native_enum=False, length=32), nullable=False),
    sa.Column('rate_usd', sa.Numeric(precision=20, scale=8), nullable=False),
    sa.Column('usd_value', sa.Numeric(precision=20, scale=8), nullable=False),
    sa.Column('share_usd', sa.Numeric(precision=20, scale=8), nullable=True),
    sa.Column('fee_usd', sa.Numeric(precision=20, scale=8), nullable=True),
    sa.Column('share_status', sa.Enum('held', 'released', 'cancelled', name='sharestatus', native_enum=False, length=32), nullable=True),
    sa.Column('release_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('needs_review', sa.Text(), nullable=True),
    sa.Column('raw', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('share_status IS NULL OR (share_usd IS NOT NULL AND release_at IS NOT NULL)', name=op.f('ck_star_payments_share_complete')),
    sa.CheckConstraint('stars > 0', name=op.f('ck_star_payments_stars_positive')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_star_payments_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_star_payments_payment_id_payments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_star_payments')),
    sa.UniqueConstraint('charge_id', name=op.f('uq_star_payments_charge_id')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_star_payments_payment_id'))
    )
    op.create_index('ix_star_payments_release', 'star_payments', ['release_at'], unique=False, postgresql_where=sa.text("share_status = 'held'"))
    op.create_index('ix_star_payments_user', 'star_payments', ['user_id', 'received_at'], unique=False)
    op.add_column('channels', sa.Column('accept_crypto', sa.Boolean(), server_default=sa.text('true'), nullable=False))
    op.add_column('channels', sa.Column('accept_stars', sa.Boolean(), server_default=sa.text('true'), nullable=False))
    op.add_column('invoices', sa.Column('method', sa.Enum('crypto', 'stars', name='paymentmethod', native_enum=False, length=32), server_default='crypto', nullable=False))
    op.add_column('invoices', sa.Column('price_stars', sa.Integer(), nullable=True))
    op.add_column('invoices', sa.Column('star_subscription', sa.Boolean(), server_default='false', nullable=False))
    op.add_column('invoices', sa.Column('renewal_of', sa.String(length=36), nullable=True))
    op.create_foreign_key(op.f('fk_invoices_renewal_of_invoices'), 'invoices', 'invoices', ['renewal_of'], ['id'])
    op.add_column('subscriptions', sa.Column('star_charge_id', sa.String(length=255), nullable=True))
    op.add_column('subscriptions', sa.Column('star_renews', sa.Boolean(), server_default='false', nullable=False))
    op.add_column('tiers', sa.Column('price_stars', sa.Integer(), nullable=True))
    op.create_check_constraint(op.f('ck_tiers_price_stars_range'), 'tiers',
                               'price_stars IS NULL OR price_stars BETWEEN 1 AND 10000')
    op.create_check_constraint(op.f('ck_invoices_stars_priced'), 'invoices', "method = 'crypto' OR price_stars > 0")


def downgrade() -> None:
    op.drop_constraint(op.f('ck_invoices_stars_priced'), 'invoices', type_='check')
    op.drop_constraint(op.f('ck_tiers_price_stars_range'), 'tiers', type_='check')
    op.drop_column('tiers', 'price_stars')
    op.drop_column('subscriptions', 'star_renews')
    op.drop_column('subscriptions', 'star_charge_id')
    op.drop_constraint(op.f('fk_invoices_renewal_of_invoices'), 'invoices', type_='foreignkey')
    op.drop_column('invoices', 'renewal_of')
    op.drop_column('invoices', 'star_subscription')
    op.drop_column('invoices', 'price_stars')
    op.drop_column('invoices', 'method')
    op.drop_column('channels', 'accept_stars')
    op.drop_column('channels', 'accept_crypto')
    op.drop_index('ix_star_payments_user', table_name='star_payments')
    op.drop_index('ix_star_payments_release', table_name='star_payments', postgresql_where=sa.text("share_status = 'held'"))
    op.drop_table('star_payments')
    op.drop_index(op.f('ix_support_requests_user_id'), table_name='support_requests')
    op.drop_table('support_requests')
    op.drop_table('star_reconciliations')
    op.drop_table('legal_texts')
