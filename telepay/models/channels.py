"""Channel pairs, their tiers, what the bot posted in them, and the owners' audit log."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint, text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from telepay.models.base import Base, utcnow


class ChannelStatus(enum.StrEnum):
    SETUP = "setup"            # registered, not yet configured with tiers and a wallet
    ACTIVE = "active"
    LOST_RIGHTS = "lost_rights"  # the bot can no longer post, invite or ban
    DISABLED = "disabled"


class PayoutStrategy(enum.StrEnum):
    INSTANT = "instant"
    THRESHOLD = "threshold"


class Channel(Base):
    """An owner's pair: the open (public) channel where posts sell, the closed one sold."""

    __tablename__ = "channels"
    __table_args__ = (
        CheckConstraint("open_chat_id <> closed_chat_id", name="distinct_chats"),
        CheckConstraint("repost_interval_hours BETWEEN 1 AND 720", name="repost_interval_range"),
        # The repost timer reads only active channels that are due.
        Index("ix_channels_next_post_at", "next_post_at", postgresql_where=text("status = 'active'")),
        CheckConstraint(
            "payout_strategy <> 'threshold' OR payout_threshold_usd >= 20", name="threshold_min"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Public handle used in deep links: short, unguessable enough, never a price.
    key: Mapped[str] = mapped_column(String(16), unique=True)
    owner_user_id: Mapped[int] = mapped_column(index=True)
    open_chat_id: Mapped[int] = mapped_column(unique=True)
    closed_chat_id: Mapped[int] = mapped_column(unique=True)
    open_title: Mapped[str] = mapped_column(String(255))
    closed_title: Mapped[str] = mapped_column(String(255))
    status: Mapped[ChannelStatus] = mapped_column(default=ChannelStatus.SETUP)
    payout_currency: Mapped[str | None] = mapped_column(String(16))
    payout_network: Mapped[str | None] = mapped_column(String(16))
    payout_address: Mapped[str | None] = mapped_column(String(128))
    payout_strategy: Mapped[PayoutStrategy] = mapped_column(default=PayoutStrategy.INSTANT)
    payout_threshold_usd: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    notify_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Payment methods the owner offers (STARS_ONLY turns crypto off for every channel).
    accept_crypto: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    accept_stars: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    notify_chat_id: Mapped[int | None]
    owner_blocked_bot: Mapped[bool] = mapped_column(Boolean, default=False)
    donation_text: Mapped[str | None] = mapped_column(Text)
    repost_interval_hours: Mapped[int] = mapped_column(Integer, default=24)
    last_broadcast_requested_at: Mapped[datetime | None]
    # When the repost timer next queues this channel's posts; set each time they are posted.
    next_post_at: Mapped[datetime | None]
    # Why the channel is in `lost_rights`, in words the owner is shown.
    status_reason: Mapped[str | None] = mapped_column(Text)
    # When Telegram last confirmed the registering owner administers both chats; and since when
    # it says they no longer do (their payouts are held until a creator takes over or they are back).
    owner_checked_at: Mapped[datetime | None]
    owner_lost_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    tiers: Mapped[list[Tier]] = relationship(
        back_populates="channel", order_by="Tier.number", cascade="all, delete-orphan"
    )


class Tier(Base):
    __tablename__ = "tiers"
    __table_args__ = (
        UniqueConstraint("channel_id", "number"),
        CheckConstraint("number BETWEEN 1 AND 3", name="number_range"),
        CheckConstraint("price_usd BETWEEN 1 AND 9999.99", name="price_range"),
        CheckConstraint("days BETWEEN 1 AND 3650", name="days_range"),
        CheckConstraint("price_stars IS NULL OR price_stars BETWEEN 1 AND 10000", name="price_stars_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    price_usd: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    days: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The owner's Stars price; None: ceil(price_usd / STARS_USD_RATE).
    price_stars: Mapped[int | None] = mapped_column(Integer)

    channel: Mapped[Channel] = relationship(back_populates="tiers")


class BroadcastPost(Base):
    """The last post the bot made of each kind in a chat, so a repost replaces it."""

    __tablename__ = "broadcast_posts"
    __table_args__ = (UniqueConstraint("chat_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    chat_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))  # "subscribe" | "donate"
    message_id: Mapped[int]
    posted_at: Mapped[datetime] = mapped_column(default=utcnow)


class PayoutCurrency(Base):
    """Currencies and networks an owner may be paid in (seeded by a migration)."""

    __tablename__ = "payout_currencies"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    network: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    address_pattern: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class AuditLog(Base):
    """Owner changes, above all payout-address changes: who, what, before and after."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    actor_user_id: Mapped[int]
    action: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
