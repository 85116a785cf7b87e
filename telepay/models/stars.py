"""Telegram Stars: every Stars payment received, the owner's share held for Telegram's withdrawal
hold, what buyers asked /paysupport, and the texts /privacy and /terms answer.

A Stars payment lands in the bot's (the platform's) balance. Its USD value is fixed when it is
received (Stars x STARS_USD_RATE, the rate kept on the row) and split like any payment into the
owner's share and the platform fee; the share is held until `release_at`, then handed to the
payout engine (`allocate_share`), or cancelled if the payment is refunded first.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from telepay.models.base import Base, utcnow


class StarPaymentStatus(enum.StrEnum):
    FULFILLED = "fulfilled"   # granted what it paid for; the share is held or released
    REVIEW = "review"         # nothing granted: a payload we never issued, a wrong amount, ...
    REFUNDED = "refunded"     # Stars returned to the buyer


class ShareStatus(enum.StrEnum):
    HELD = "held"             # waiting for Telegram's withdrawal hold to pass
    RELEASED = "released"     # handed to the payout engine (an instant payout or a batch share)
    CANCELLED = "cancelled"   # refunded inside the hold: the owner gets nothing for it


class StarPayment(Base):
    """One `successful_payment` in Stars, kept once per `telegram_payment_charge_id`."""

    __tablename__ = "star_payments"
    __table_args__ = (
        CheckConstraint("stars > 0", name="stars_positive"),
        CheckConstraint("share_status IS NULL OR (share_usd IS NOT NULL AND release_at IS NOT NULL)",
                        name="share_complete"),
        # The release timer reads only held shares in release order.
        Index("ix_star_payments_release", "release_at", postgresql_where=text("share_status = 'held'")),
        Index("ix_star_payments_user", "user_id", "received_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    charge_id: Mapped[str] = mapped_column(String(255), unique=True)
    user_id: Mapped[int]
    stars: Mapped[int] = mapped_column(BigInteger)
    payload: Mapped[str] = mapped_column(String(255))
    # The invoice the payload names (None: we never issued it) and, once fulfilled, the payment
    # row fulfilment and the payout engine know it by.
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), unique=True)
    is_recurring: Mapped[bool] = mapped_column(default=False)
    subscription_expires_at: Mapped[datetime | None]
    status: Mapped[StarPaymentStatus]
    rate_usd: Mapped[Decimal] = mapped_column(Numeric(20, 8))
    usd_value: Mapped[Decimal]
    share_usd: Mapped[Decimal | None]
    fee_usd: Mapped[Decimal | None]
    share_status: Mapped[ShareStatus | None]
    release_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    refunded_at: Mapped[datetime | None]
    needs_review: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SupportRequest(Base):
    """A buyer's /paysupport: which payment, what is wrong; owner and operators are told."""

    __tablename__ = "support_requests"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(index=True)
    # "stars:<star payment id>" or "crypto:<payment id>": the payment the buyer picked.
    payment_ref: Mapped[str] = mapped_column(String(64))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="SET NULL"))
    message: Mapped[str] = mapped_column(Text)
    resolved_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LegalText(Base):
    """What /privacy and /terms answer when an operator has set them (else the shipped defaults)."""

    __tablename__ = "legal_texts"
    __table_args__ = (CheckConstraint("name IN ('privacy', 'terms')", name="known_name"),)

    name: Mapped[str] = mapped_column(String(16), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class StarReconciliation(Base):
    """One comparison of our Stars records with getStarTransactions, and what differed."""

    __tablename__ = "star_reconciliations"

    id: Mapped[int] = mapped_column(primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    telegram_count: Mapped[int] = mapped_column(Integer)
    differences: Mapped[list[Any]]
