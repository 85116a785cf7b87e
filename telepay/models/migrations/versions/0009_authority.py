"""authority: delivery before money, expiry bans the bot made, the owner's admin status

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("access_delivered_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("invites", sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    # The delivery queue is read by status; few rows are ever waiting.
    op.create_index("ix_invites_waiting", "invites", ["waiting_since"],
                    postgresql_where=sa.text("status = 'waiting'"))
    op.add_column("subscriptions", sa.Column("removal_banned_for", sa.DateTime(timezone=True), nullable=True))
    op.add_column("channels", sa.Column("owner_checked_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("channels", sa.Column("owner_lost_at", sa.DateTime(timezone=True), nullable=True))
    # Invoices delivered before this migration: their shares were released already.
    op.execute("UPDATE invoices SET access_delivered_at = completed_at WHERE completed_at IS NOT NULL")


def downgrade() -> None:
    op.drop_column("channels", "owner_lost_at")
    op.drop_column("channels", "owner_checked_at")
    op.drop_column("subscriptions", "removal_banned_for")
    op.drop_index("ix_invites_waiting", table_name="invites")
    op.drop_column("invites", "waiting_since")
    op.drop_column("invoices", "access_delivered_at")
