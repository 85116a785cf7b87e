"""payouts as on mainnet: every signed version of a host transfer; when an exchange was requested

Revision ID: 0007
Revises: 0006
"""

from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payouts", sa.Column("exchange_requested_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "chain_tx_attempts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("chain_transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", sa.String(length=66), nullable=False),
        sa.Column("raw_tx", sa.LargeBinary(), nullable=False),
        sa.Column("max_fee_per_gas", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("max_priority_fee_per_gas", sa.Numeric(precision=78, scale=0), nullable=False),
        sa.Column("gas", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["chain_transaction_id"], ["chain_transactions.id"],
                                name=op.f("fk_chain_tx_attempts_chain_transaction_id_chain_transactions")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_tx_attempts")),
        sa.UniqueConstraint("tx_hash", name=op.f("uq_chain_tx_attempts_tx_hash")),
    )
    op.create_index(op.f("ix_chain_tx_attempts_chain_transaction_id"), "chain_tx_attempts",
                    ["chain_transaction_id"], unique=False)
    # Transfers signed before this revision had one version each: it becomes their first attempt
    # (fees unknown then, recorded as 0; they are only read to price a replacement, which then
    # starts from the chain's current fees).
    op.execute("INSERT INTO chain_tx_attempts (chain_transaction_id, tx_hash, raw_tx, max_fee_per_gas, "
               "max_priority_fee_per_gas, gas, created_at) SELECT id, tx_hash, raw_tx, 0, 0, 0, created_at "
               "FROM chain_transactions")


def downgrade() -> None:
    op.drop_index(op.f("ix_chain_tx_attempts_chain_transaction_id"), table_name="chain_tx_attempts")
    op.drop_table("chain_tx_attempts")
    op.drop_column("payouts", "exchange_requested_at")
