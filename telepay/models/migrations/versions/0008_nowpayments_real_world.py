"""nowpayments as documented: refused IPNs kept and counted; currency codes up to 32 characters

Revision ID: 0008
Revises: 0007
"""

from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refused_ipns",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_ip", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refused_ipns")),
    )
    op.create_index("ix_refused_ipns_refused_at", "refused_ipns", ["refused_at"])
    for column in ("pay_currency", "outcome_currency"):
        op.alter_column("payments", column, type_=sa.String(length=32), existing_type=sa.String(length=16))


def downgrade() -> None:
    for column in ("pay_currency", "outcome_currency"):
        op.alter_column("payments", column, type_=sa.String(length=16), existing_type=sa.String(length=32),
                        postgresql_using=f"left({column}, 16)")
    op.drop_index("ix_refused_ipns_refused_at", table_name="refused_ipns")
    op.drop_table("refused_ipns")
