"""Money out: payouts to owners, shares held for threshold batches, and host-wallet transfers.

A `Payout` is one movement of money out of the host wallet: to an owner (instant: one payment's
share; batch: an owner's held shares) or to the host's own USDT address (sweep: the ETH that
threshold shares arrived as, converted so they are held as USDT). Every payment's share can be
traced to exactly one payout (`payments.payout_id`) or to an accumulation waiting for a batch.
"""

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
    SWEEP = "sweep"  # host ETH -> host USDT for threshold shares; no channel, no owner


class PayoutStatus(enum.StrEnum):
    PENDING = "pending"
    EXCHANGE_REQUESTED = "exchange_requested"  # intent recorded before ChangeNOW is called
    EXCHANGE_CREATED = "exchange_created"
    FUNDING = "funding"                        # host transfer signed and stored
    FUNDED = "funded"                          # host transfer mined
    FINISHED = "finished"
    CARRIED_OVER = "carried_over"              # below the provider minimum; waits for more
    MERGED = "merged"                          # a carried-over payout absorbed by a later one
    NEEDS_REVIEW = "needs_review"
    CANCELLED = "cancelled"


# Where a payout's money is: settled, or still owed to the owner (pending / carried over).
SETTLED_STATUSES = frozenset({PayoutStatus.FINISHED, PayoutStatus.CANCELLED, PayoutStatus.MERGED})


class Payout(Base):
    __tablename__ = "payouts"
    __table_args__ = (
        CheckConstraint("amount_usd >= 0", name="amount_nonnegative"),
        CheckConstraint("kind = 'sweep' OR channel_id IS NOT NULL", name="owner_payout_has_channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # None only for sweeps, which pay the host itself.
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id"))
    kind: Mapped[PayoutKind]
    status: Mapped[PayoutStatus] = mapped_column(default=PayoutStatus.PENDING)
    amount_usd: Mapped[Decimal]
    # What the host wallet pays with: "ETH" (instant, sweeps) or "USDT" (batches).
    funding_asset: Mapped[str] = mapped_column(String(16), default="ETH")
    to_currency: Mapped[str] = mapped_column(String(16))
    to_network: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str] = mapped_column(String(128))
    # The fixed-rate quote the exchange is created with (recorded before creating it).
    rate_id: Mapped[str | None] = mapped_column(String(64))
    # When that intent was recorded: an exchange created for it cannot be older (see `exchanges`).
    exchange_requested_at: Mapped[datetime | None]
    exchange_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    payin_address: Mapped[str | None] = mapped_column(String(128))
    # from_amount: funding asset, whole units; to_amount: what the owner gets, their currency.
    from_amount: Mapped[Decimal | None] = mapped_column(CryptoAmount)
    to_amount: Mapped[Decimal | None] = mapped_column(CryptoAmount)
    payout_hash: Mapped[str | None] = mapped_column(String(128))
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    # The status a payout in needs_review resumes from when an operator retries it.
    resume_status: Mapped[PayoutStatus | None]
    # Start of the current run of failures; past 24 h the payout goes to needs_review.
    failing_since: Mapped[datetime | None]
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
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"), index=True)
    # The sweep that converted this share's ETH into host USDT (None: not yet swept).
    sweep_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"), index=True)
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
        # Never a second signed transaction for one payout: the database refuses it.
        UniqueConstraint("payout_id"),
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
    block_number: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ChainTxAttempt(Base):
    """One signed version of a host transfer. A stuck transfer is replaced by a new version with
    the same nonce and higher fees; any one of them may be the one mined, so every hash ever
    signed for the nonce is kept. `ChainTransaction.raw_tx`/`tx_hash` is the newest version
    until one is mined, then the mined one."""

    __tablename__ = "chain_tx_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    chain_transaction_id: Mapped[int] = mapped_column(ForeignKey("chain_transactions.id"), index=True)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    max_fee_per_gas: Mapped[Decimal] = mapped_column(BaseUnits)
    max_priority_fee_per_gas: Mapped[Decimal] = mapped_column(BaseUnits)
    gas: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
