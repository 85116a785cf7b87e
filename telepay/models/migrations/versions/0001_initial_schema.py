"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 00:18:58.264928
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accepted_signatures',
    sa.Column('signature', sa.String(length=64), nullable=False),
    sa.Column('accepted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('signature', name=op.f('pk_accepted_signatures'))
    )
    op.create_table('bot_state',
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('kind', 'key', name=op.f('pk_bot_state'))
    )
    op.create_table('channels',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('key', sa.String(length=16), nullable=False),
    sa.Column('owner_user_id', sa.BigInteger(), nullable=False),
    sa.Column('open_chat_id', sa.BigInteger(), nullable=False),
    sa.Column('closed_chat_id', sa.BigInteger(), nullable=False),
    sa.Column('open_title', sa.String(length=255), nullable=False),
    sa.Column('closed_title', sa.String(length=255), nullable=False),
    sa.Column('status', sa.Enum('setup', 'active', 'lost_rights', 'disabled', name='channelstatus', native_enum=False, length=32), nullable=False),
    sa.Column('payout_currency', sa.String(length=16), nullable=True),
    sa.Column('payout_network', sa.String(length=16), nullable=True),
    sa.Column('payout_address', sa.String(length=128), nullable=True),
    sa.Column('payout_strategy', sa.Enum('instant', 'threshold', name='payoutstrategy', native_enum=False, length=32), nullable=False),
    sa.Column('payout_threshold_usd', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('notify_enabled', sa.Boolean(), nullable=False),
    sa.Column('notify_chat_id', sa.BigInteger(), nullable=True),
    sa.Column('owner_blocked_bot', sa.Boolean(), nullable=False),
    sa.Column('donation_text', sa.Text(), nullable=True),
    sa.Column('repost_interval_hours', sa.Integer(), nullable=False),
    sa.Column('last_broadcast_requested_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("payout_strategy <> 'threshold' OR payout_threshold_usd >= 20", name=op.f('ck_channels_threshold_min')),
    sa.CheckConstraint('open_chat_id <> closed_chat_id', name=op.f('ck_channels_distinct_chats')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_channels')),
    sa.UniqueConstraint('closed_chat_id', name=op.f('uq_channels_closed_chat_id')),
    sa.UniqueConstraint('key', name=op.f('uq_channels_key')),
    sa.UniqueConstraint('open_chat_id', name=op.f('uq_channels_open_chat_id'))
    )
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=64), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=True),
    sa.Column('state', sa.Enum('queued', 'running', 'done', 'dead', 'cancelled', name='jobstate', native_enum=False, length=32), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('run_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('locked_by', sa.String(length=100), nullable=True),
    sa.Column('locked_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    sa.UniqueConstraint('kind', 'dedupe_key', name=op.f('uq_jobs_kind_dedupe_key'))
    )
    op.create_index('ix_jobs_lease', 'jobs', ['locked_until'], unique=False, postgresql_where=sa.text("state = 'running'"))
    op.create_index('ix_jobs_runnable', 'jobs', ['run_at'], unique=False, postgresql_where=sa.text("state = 'queued'"))
    op.create_table('payment_events',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('provider_payment_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=32), nullable=False),
    sa.Column('raw_body', sa.Text(), nullable=False),
    sa.Column('body', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_events')),
    sa.UniqueConstraint('provider_payment_id', 'status', name=op.f('uq_payment_events_provider_payment_id_status'))
    )
    op.create_table('payout_currencies',
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('network', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('address_pattern', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code', 'network', name=op.f('pk_payout_currencies'))
    )
    op.create_table('timer_runs',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('last_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_timer_runs'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=True),
    sa.Column('actor_user_id', sa.BigInteger(), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_audit_log_channel_id_channels'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    op.create_table('broadcast_posts',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('message_id', sa.BigInteger(), nullable=False),
    sa.Column('posted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_broadcast_posts_channel_id_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_broadcast_posts')),
    sa.UniqueConstraint('chat_id', 'kind', name=op.f('uq_broadcast_posts_chat_id_kind'))
    )
    op.create_table('payouts',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Enum('instant', 'batch', name='payoutkind', native_enum=False, length=32), nullable=False),
    sa.Column('status', sa.Enum('pending', 'exchange_requested', 'exchange_created', 'funding', 'funded', 'finished', 'carried_over', 'needs_review', 'cancelled', name='payoutstatus', native_enum=False, length=32), nullable=False),
    sa.Column('amount_usd', sa.Numeric(precision=20, scale=8), nullable=False),
    sa.Column('to_currency', sa.String(length=16), nullable=False),
    sa.Column('to_network', sa.String(length=16), nullable=False),
    sa.Column('to_address', sa.String(length=128), nullable=False),
    sa.Column('exchange_id', sa.String(length=64), nullable=True),
    sa.Column('payin_address', sa.String(length=128), nullable=True),
    sa.Column('from_amount', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('to_amount', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount_usd >= 0', name=op.f('ck_payouts_amount_nonnegative')),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_payouts_channel_id_channels')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payouts')),
    sa.UniqueConstraint('exchange_id', name=op.f('uq_payouts_exchange_id'))
    )
    op.create_table('tiers',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('price_usd', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('days', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint('days BETWEEN 1 AND 3650', name=op.f('ck_tiers_days_range')),
    sa.CheckConstraint('number BETWEEN 1 AND 3', name=op.f('ck_tiers_number_range')),
    sa.CheckConstraint('price_usd BETWEEN 1 AND 9999.99', name=op.f('ck_tiers_price_range')),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_tiers_channel_id_channels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tiers')),
    sa.UniqueConstraint('channel_id', 'number', name=op.f('uq_tiers_channel_id_number'))
    )
    op.create_table('chain_transactions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('payout_id', sa.BigInteger(), nullable=True),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('asset', sa.String(length=16), nullable=False),
    sa.Column('from_address', sa.String(length=42), nullable=False),
    sa.Column('to_address', sa.String(length=42), nullable=False),
    sa.Column('amount_base_units', sa.Numeric(precision=78, scale=0), nullable=False),
    sa.Column('nonce', sa.BigInteger(), nullable=False),
    sa.Column('raw_tx', sa.LargeBinary(), nullable=False),
    sa.Column('tx_hash', sa.String(length=66), nullable=False),
    sa.Column('status', sa.Enum('signed', 'broadcast', 'confirmed', 'failed', name='chaintxstatus', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_base_units > 0', name=op.f('ck_chain_transactions_amount_positive')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_chain_transactions_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_transactions')),
    sa.UniqueConstraint('from_address', 'nonce', name=op.f('uq_chain_transactions_from_address_nonce')),
    sa.UniqueConstraint('tx_hash', name=op.f('uq_chain_transactions_tx_hash'))
    )
    op.create_table('invoices',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.Enum('subscription', 'donation', name='invoicekind', native_enum=False, length=32), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('tier_id', sa.BigInteger(), nullable=True),
    sa.Column('buyer_user_id', sa.BigInteger(), nullable=False),
    sa.Column('buyer_username', sa.String(length=64), nullable=True),
    sa.Column('price_usd', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('days', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('created', 'pending', 'partially_paid', 'completed', 'expired', 'failed', name='invoicestatus', native_enum=False, length=32), nullable=False),
    sa.Column('provider_invoice_id', sa.String(length=64), nullable=True),
    sa.Column('invoice_url', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("kind = 'donation' OR (tier_id IS NOT NULL AND days IS NOT NULL)", name=op.f('ck_invoices_subscription_has_tier')),
    sa.CheckConstraint('price_usd > 0', name=op.f('ck_invoices_price_positive')),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_invoices_channel_id_channels')),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_invoices_tier_id_tiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invoices')),
    sa.UniqueConstraint('provider_invoice_id', name=op.f('uq_invoices_provider_invoice_id'))
    )
    op.create_table('payments',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('provider_payment_id', sa.String(length=64), nullable=False),
    sa.Column('invoice_id', sa.String(length=36), nullable=False),
    sa.Column('parent_payment_id', sa.String(length=64), nullable=True),
    sa.Column('status', sa.Enum('waiting', 'confirming', 'confirmed', 'sending', 'partially_paid', 'finished', 'failed', 'refunded', 'expired', name='paymentstatus', native_enum=False, length=32), nullable=False),
    sa.Column('pay_currency', sa.String(length=16), nullable=True),
    sa.Column('pay_amount', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('actually_paid', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('actually_paid_usd', sa.Numeric(precision=20, scale=8), nullable=True),
    sa.Column('price_amount', sa.Numeric(precision=20, scale=8), nullable=True),
    sa.Column('outcome_amount', sa.Numeric(precision=38, scale=18), nullable=True),
    sa.Column('outcome_currency', sa.String(length=16), nullable=True),
    sa.Column('owner_share_usd', sa.Numeric(precision=20, scale=8), nullable=True),
    sa.Column('platform_fee_usd', sa.Numeric(precision=20, scale=8), nullable=True),
    sa.Column('payout_id', sa.BigInteger(), nullable=True),
    sa.Column('needs_review', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_payments_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_payments_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payments')),
    sa.UniqueConstraint('provider_payment_id', name=op.f('uq_payments_provider_payment_id'))
    )
    op.create_table('subscriptions',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Enum('active', 'expired', name='subscriptionstatus', native_enum=False, length=32), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_invoice_id', sa.String(length=36), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_subscriptions_channel_id_channels')),
    sa.ForeignKeyConstraint(['last_invoice_id'], ['invoices.id'], name=op.f('fk_subscriptions_last_invoice_id_invoices')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscriptions')),
    sa.UniqueConstraint('channel_id', 'user_id', name=op.f('uq_subscriptions_channel_id_user_id'))
    )
    op.create_index('ix_subscriptions_due', 'subscriptions', ['expires_at'], unique=False, postgresql_where=sa.text("status = 'active'"))
    op.create_table('accumulations',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('channel_id', sa.BigInteger(), nullable=False),
    sa.Column('payment_id', sa.BigInteger(), nullable=False),
    sa.Column('amount_usd', sa.Numeric(precision=20, scale=8), nullable=False),
    sa.Column('payout_id', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['channel_id'], ['channels.id'], name=op.f('fk_accumulations_channel_id_channels')),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_accumulations_payment_id_payments')),
    sa.ForeignKeyConstraint(['payout_id'], ['payouts.id'], name=op.f('fk_accumulations_payout_id_payouts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_accumulations')),
    sa.UniqueConstraint('payment_id', name=op.f('uq_accumulations_payment_id'))
    )
    op.create_table('invites',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('subscription_id', sa.BigInteger(), nullable=False),
    sa.Column('invoice_id', sa.String(length=36), nullable=True),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=False),
    sa.Column('link', sa.Text(), nullable=True),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('status', sa.Enum('created', 'sent', 'undelivered', 'used', 'revoked', name='invitestatus', native_enum=False, length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], name=op.f('fk_invites_invoice_id_invoices')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscriptions.id'], name=op.f('fk_invites_subscription_id_subscriptions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invites')),
    sa.UniqueConstraint('link', name=op.f('uq_invites_link'))
    )

    # What owners may be paid in. The pattern is a local format check made before ChangeNOW's
    # own address validation is asked.
    payout_currencies = sa.table(
        "payout_currencies",
        sa.column("code", sa.String), sa.column("network", sa.String), sa.column("name", sa.String),
        sa.column("address_pattern", sa.String), sa.column("active", sa.Boolean),
    )
    evm = r"^0x[0-9a-fA-F]{40}$"
    op.bulk_insert(payout_currencies, [
        {"code": "eth", "network": "eth", "name": "Ether (Ethereum)", "address_pattern": evm, "active": True},
        {"code": "usdt", "network": "eth", "name": "Tether USDT (ERC-20)", "address_pattern": evm, "active": True},
        {"code": "usdc", "network": "eth", "name": "USD Coin (ERC-20)", "address_pattern": evm, "active": True},
        {"code": "usdt", "network": "trx", "name": "Tether USDT (TRC-20)",
         "address_pattern": r"^T[1-9A-HJ-NP-Za-km-z]{33}$", "active": True},
        {"code": "btc", "network": "btc", "name": "Bitcoin",
         "address_pattern": r"^(bc1[02-9ac-hj-np-z]{11,71}|[13][1-9A-HJ-NP-Za-km-z]{25,34})$", "active": True},
        {"code": "ltc", "network": "ltc", "name": "Litecoin",
         "address_pattern": r"^(ltc1[02-9ac-hj-np-z]{11,71}|[LM3][1-9A-HJ-NP-Za-km-z]{26,33})$", "active": True},
        {"code": "sol", "network": "sol", "name": "Solana",
         "address_pattern": r"^[1-9A-HJ-NP-Za-km-z]{32,44}$", "active": True},
        {"code": "ton", "network": "ton", "name": "Toncoin",
         "address_pattern": r"^(EQ|UQ)[A-Za-z0-9_-]{46}$", "active": True},
    ])


def downgrade() -> None:
    op.drop_table('invites')
    op.drop_table('accumulations')
    op.drop_index('ix_subscriptions_due', table_name='subscriptions', postgresql_where=sa.text("status = 'active'"))
    op.drop_table('subscriptions')
    op.drop_table('payments')
    op.drop_table('invoices')
    op.drop_table('chain_transactions')
    op.drop_table('tiers')
    op.drop_table('payouts')
    op.drop_table('broadcast_posts')
    op.drop_table('audit_log')
    op.drop_table('timer_runs')
    op.drop_table('payout_currencies')
    op.drop_table('payment_events')
    op.drop_index('ix_jobs_runnable', table_name='jobs', postgresql_where=sa.text("state = 'queued'"))
    op.drop_index('ix_jobs_lease', table_name='jobs', postgresql_where=sa.text("state = 'running'"))
    op.drop_table('jobs')
    op.drop_table('channels')
    op.drop_table('bot_state')
    op.drop_table('accepted_signatures')
