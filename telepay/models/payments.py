"""Money in: our invoices, the provider's payments, and every IPN received."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from telepay.models.base import Base, CryptoAmount, utcnow


class InvoiceKind(enum.StrEnum):
    SUBSCRIPTION = "subscription"
    DONATION = "donation"


class PaymentMethod(enum.StrEnum):
    CRYPTO = "crypto"   # NOWPayments
    STARS = "stars"     # Telegram Stars (XTR), paid inside Telegram


class InvoiceStatus(enum.StrEnum):
    CREATED = "created"        # our row exists; the provider invoice may not yet
    PENDING = "pending"        # provider invoice created, waiting for payment
    PARTIALLY_PAID = "partially_paid"
    COMPLETED = "completed"
    EXPIRED = "expired"
    FAILED = "failed"
    REFUNDED = "refunded"      # the provider returned the money before anything was granted


class PaymentStatus(enum.StrEnum):
    WAITING = "waiting"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    SENDING = "sending"
    PARTIALLY_PAID = "partially_paid"
    FINISHED = "finished"
    FAILED = "failed"
    REFUNDED = "refunded"
    EXPIRED = "expired"


class Invoice(Base):
    """What a buyer was asked to pay. Price and days are copied from the tier at creation."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("price_usd > 0", name="price_positive"),
        CheckConstraint("method = 'crypto' OR price_stars > 0", name="stars_priced"),
        CheckConstraint("kind = 'donation' OR (tier_id IS NOT NULL AND days IS NOT NULL)",
                        name="subscription_has_tier"),
        # A buyer pressing "Pay" again finds their open invoice instead of making another.
        Index("ix_invoices_buyer", "buyer_user_id", "created_at"),
    )

    # Our id is the provider's `order_id`: random, so it reveals nothing and cannot be guessed.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[InvoiceKind]
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id"))
    tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    buyer_user_id: Mapped[int]
    buyer_username: Mapped[str | None] = mapped_column(String(64))
    price_usd: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    days: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[InvoiceStatus] = mapped_column(default=InvoiceStatus.CREATED)
    provider_invoice_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    invoice_url: Mapped[str | None] = mapped_column(Text)
    # The provider's last refusal while creating its invoice (the buyer is offered a retry).
    provider_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[datetime | None]
    # A subscription's access reached the buyer (invite sent, or already in): the owner's share
    # of it may be paid out from then on (delivery before money).
    access_delivered_at: Mapped[datetime | None]
    method: Mapped[PaymentMethod] = mapped_column(default=PaymentMethod.CRYPTO, server_default="crypto")
    # Stars invoices: the whole Stars asked, whether it is a 30-day Star subscription, and for a
    # renewal charge, the invoice that started the subscription (its payload names that one).
    price_stars: Mapped[int | None] = mapped_column(Integer)
    star_subscription: Mapped[bool] = mapped_column(default=False, server_default="false")
    renewal_of: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))


class Payment(Base):
    """One provider payment, its furthest status, and the owner's share once it finished."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_payment_id: Mapped[str] = mapped_column(String(64), unique=True)
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"))
    # Extra deposits to the same address arrive as new payments naming their parent; they
    # are recorded for the operator, never fulfilled automatically.
    parent_payment_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[PaymentStatus]
    pay_currency: Mapped[str | None] = mapped_column(String(32))
    pay_amount: Mapped[Decimal | None] = mapped_column(CryptoAmount)
    actually_paid: Mapped[Decimal | None] = mapped_column(CryptoAmount)
    actually_paid_usd: Mapped[Decimal | None]
    price_amount: Mapped[Decimal | None]
    outcome_amount: Mapped[Decimal | None] = mapped_column(CryptoAmount)
    outcome_currency: Mapped[str | None] = mapped_column(String(32))
    owner_share_usd: Mapped[Decimal | None]
    platform_fee_usd: Mapped[Decimal | None]
    payout_id: Mapped[int | None] = mapped_column(ForeignKey("payouts.id"))
    needs_review: Mapped[str | None] = mapped_column(Text)
    # When this payment completed its invoice (granted access or thanked a donor); a refund
    # after that takes back what it granted (`telepay.services.payments.refunds`).
    fulfilled_at: Mapped[datetime | None]
    # Our last status query to the provider, for payments whose IPNs seem lost.
    checked_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaymentEvent(Base):
    """Every distinct IPN, kept verbatim. (payment, status) repeats add nothing."""

    __tablename__ = "payment_events"
    __table_args__ = (UniqueConstraint("provider_payment_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_payment_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    raw_body: Mapped[str] = mapped_column(Text)
    body: Mapped[dict[str, Any]]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class RefusedIpn(Base):
    """An IPN the endpoint refused (address, signature, schema, order), kept so refusals can be
    counted, shown and alerted on: a paid invoice whose IPNs are all refused is a buyer waiting."""

    __tablename__ = "refused_ipns"
    __table_args__ = (Index("ix_refused_ipns_refused_at", "refused_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    refused_at: Mapped[datetime] = mapped_column(default=utcnow)
    client_ip: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
