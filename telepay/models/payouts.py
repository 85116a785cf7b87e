"""Money out: payouts to owners, shares held for threshold batches, and host-wallet transfers."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from telepay.models.base import Base, BaseUnits, CryptoAmount, utcnow


class PayoutKind(enum.StrEnum):
    INSTANT = "instant"
    BATCH = "batch"


class PayoutStatus(enum.StrEnum):
    PENDING = "pending"
    EXCHANGE_REQUESTED = "exchange_requested"  # intent recorded before ChangeNOW is called
    EXCHANGE_CREATED = "exchange_created"
    FUNDING = "funding"                        # host transfer signed and stored
    FUNDED = "funded"                          # host transfer mined
    FINISHED = "finished"
    CARRIED_OVER = "carried_over"              # below the provider minimum; waits for more
    NEEDS_REVIEW = "needs_review"
    CANCELLED = "cancelled"


class Payout(Base):
    __tablename__ = "payouts"
    __table_args__ = (CheckConstraint("amount_usd >= 0", name="amount_nonnegative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    kind: Mapped[PayoutKind]
    status: Mapped[PayoutStatus] = mapped_column(default=PayoutStatus.PENDING)
    amount_usd: Mapped[Decimal]
    to_currency: Mapped[str] = mapped_column(String(16))
    to_network: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str] = mapped_column(String(128))
    exchange_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    payin_address: Mapped[str | None] = mapped_column(String(128))
    from_amount: Mapped[Decimal | None] = mapped_column(CryptoAmount)
    to_amount: Mapped[Decimal | None] = mapped_column(CryptoAmount)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None]


class Accumulation(Base):
    """An owner's share locked in USD, waiting for the threshold; one per payment."""

    __tablename__ = "accumulations"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), unique=True)
    amount_usd: Mapped[Decimal]
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChainTxStatus(enum.StrEnum):
    SIGNED = "signed"          # raw bytes and hash stored; may or may not be broadcast yet
    BROADCAST = "broadcast"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class ChainTransaction(Base):
    """A host-wallet transfer, stored signed *before* broadcast so a retry resends the same bytes."""

    __tablename__ = "chain_transactions"
    __table_args__ = (
        UniqueConstraint("from_address", "nonce"),
        CheckConstraint("amount_base_units > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    purpose: Mapped[str] = mapped_column(String(32))  # "payout" | "sweep"
    asset: Mapped[str] = mapped_column(String(16))     # "ETH" | "USDT"
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    amount_base_units: Mapped[Decimal] = mapped_column(BaseUnits)
    nonce: Mapped[int]
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    status: Mapped[ChainTxStatus] = mapped_column(default=ChainTxStatus.SIGNED)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
