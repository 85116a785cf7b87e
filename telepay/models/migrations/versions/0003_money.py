"""payouts: shares, instant and batch payouts, host wallet transfers

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_STATUS = sa.Enum('pending', 'exchange_requested', 'exchange_created', 'funding', 'funded', 'finished',
                  'carried_over', 'merged', 'needs_review', 'cancelled', name='payoutstatus', native_enum=False,
                  length=32)


def upgrade() -> None:
    op.add_column('accumulations', sa.Column('sweep_id', sa.BigInteger(), nullable=True))
    op.create_index(op.f('ix_accumulations_payout_id'), 'accumulations', ['payout_id'], unique=False)
    op.create_index(op.f('ix_accumulations_sweep_id'), 'accumulations', ['sweep_id'], unique=False)
    op.create_foreign_key(op.f('fk_accumulations_sweep_id_payouts'), 'accumulations', 'payouts', ['sweep_id'], ['id'])
    op.add_column('chain_transactions', sa.Column('block_number', sa.BigInteger(), nullable=True))
    op.create_unique_constraint(op.f('uq_chain_transactions_payout_id'), 'chain_transactions', ['payout_id'])
    # Rows from before this revision were all funded in ETH; the default only fills them.
    op.add_column('payouts', sa.Column('funding_asset', sa.String(length=16), nullable=False, server_default='ETH'))
    op.alter_column('payouts', 'funding_asset', server_default=None)
    op.add_column('payouts', sa.Column('rate_id', sa.String(length=64), nullable=True))
    op.add_column('payouts', sa.Column('payout_hash', sa.String(length=128), nullable=True))
    op.add_column('payouts', sa.Column('merged_into_id', sa.BigInteger(), nullable=True))
    op.add_column('payouts', sa.Column('resume_status', _STATUS, nullable=True))
    op.add_column('payouts', sa.Column('failing_since', sa.DateTime(timezone=True), nullable=True))
    op.alter_column('payouts', 'channel_id', existing_type=sa.BIGINT(), nullable=True)
    op.create_check_constraint(op.f('ck_payouts_owner_payout_has_channel'), 'payouts',
                               "kind = 'sweep' OR channel_id IS NOT NULL")
    op.create_foreign_key(op.f('fk_payouts_merged_into_id_payouts'), 'payouts', 'payouts', ['merged_into_id'], ['id'])


def downgrade() -> None:
    op.drop_constraint(op.f('fk_payouts_merged_into_id_payouts'), 'payouts', type_='foreignkey')
    op.drop_constraint(op.f('ck_payouts_owner_payout_has_channel'), 'payouts', type_='check')
    op.alter_column('payouts', 'channel_id', existing_type=sa.BIGINT(), nullable=False)
    op.drop_column('payouts', 'failing_since')
    op.drop_column('payouts', 'resume_status')
    op.drop_column('payouts', 'merged_into_id')
    op.drop_column('payouts', 'payout_hash')
    op.drop_column('payouts', 'rate_id')
    op.drop_column('payouts', 'funding_asset')
    op.drop_constraint(op.f('uq_chain_transactions_payout_id'), 'chain_transactions', type_='unique')
    op.drop_column('chain_transactions', 'block_number')
    op.drop_constraint(op.f('fk_accumulations_sweep_id_payouts'), 'accumulations', type_='foreignkey')
    op.drop_index(op.f('ix_accumulations_sweep_id'), table_name='accumulations')
    op.drop_index(op.f('ix_accumulations_payout_id'), table_name='accumulations')
    op.drop_column('accumulations', 'sweep_id')
