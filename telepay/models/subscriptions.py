"""Who has access to which closed channel until when, and the invite links that grant it."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from telepay.models.base import Base, utcnow


class SubscriptionStatus(enum.StrEnum):
    ACTIVE = "active"
    EXPIRED = "expired"


class Subscription(Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        UniqueConstraint("channel_id", "user_id"),
        # The expiry sweep reads only active rows in expiry order.
        Index("ix_subscriptions_due", "expires_at", postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    user_id: Mapped[int]
    status: Mapped[SubscriptionStatus] = mapped_column(default=SubscriptionStatus.ACTIVE)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    last_invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    # A Star subscription: the first charge of it (editUserStarSubscription names it) and
    # whether Telegram will charge again at the period's end (Cancel / Resume in /mysubs).
    star_charge_id: Mapped[str | None] = mapped_column(String(255))
    star_renews: Mapped[bool] = mapped_column(default=False, server_default="false")
    # The expiry of the term the bot banned this user for, written before the ban: only a ban
    # the bot made for expiry is ever lifted (an owner's own ban stays).
    removal_banned_for: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class InviteStatus(enum.StrEnum):
    CREATED = "created"
    SENT = "sent"
    UNDELIVERED = "undelivered"  # the buyer's chat refused it; /mysubs offers a fresh one
    WAITING = "waiting"          # paid, but the bot lacks the rights to let them in: the delivery queue
    REVIEW = "review"            # waited past the delivery deadline: operators refund or credit
    USED = "used"
    REVOKED = "revoked"


class Invite(Base):
    """A join-request link made for one buyer; anyone else's request on it is declined."""

    __tablename__ = "invites"
    __table_args__ = (
        # The invite job finds its invoice's link; "Get my invite" finds a buyer's open links.
        Index("ix_invites_invoice_id", "invoice_id"),
        Index("ix_invites_chat_id_user_id", "chat_id", "user_id"),
        Index("ix_invites_waiting", "waiting_since", postgresql_where=text("status = 'waiting'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    chat_id: Mapped[int]
    user_id: Mapped[int]
    link: Mapped[str | None] = mapped_column(Text, unique=True)
    name: Mapped[str] = mapped_column(String(32))
    status: Mapped[InviteStatus] = mapped_column(default=InviteStatus.CREATED)
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    waiting_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
