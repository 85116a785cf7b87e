"""bot: owner set-up, posts and buyers' invoices

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("channels", sa.Column("next_post_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("channels", sa.Column("status_reason", sa.Text(), nullable=True))
    op.create_check_constraint(op.f("ck_channels_repost_interval_range"), "channels",
                               "repost_interval_hours BETWEEN 1 AND 720")
    op.create_index("ix_channels_next_post_at", "channels", ["next_post_at"], unique=False,
                    postgresql_where=sa.text("status = 'active'"))
    op.create_index(op.f("ix_channels_owner_user_id"), "channels", ["owner_user_id"], unique=False)
    op.add_column("invoices", sa.Column("provider_error", sa.Text(), nullable=True))
    op.create_index("ix_invoices_buyer", "invoices", ["buyer_user_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_invoices_buyer", table_name="invoices")
    op.drop_column("invoices", "provider_error")
    op.drop_index(op.f("ix_channels_owner_user_id"), table_name="channels")
    op.drop_index("ix_channels_next_post_at", table_name="channels",
                  postgresql_where=sa.text("status = 'active'"))
    op.drop_constraint(op.f("ck_channels_repost_interval_range"), "channels", type_="check")
    op.drop_column("channels", "status_reason")
    op.drop_column("channels", "next_post_at")
