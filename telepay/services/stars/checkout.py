"""Stars checkout: our invoice rows for XTR invoices, and the pre-checkout decision.

An invoice row is written before Telegram is asked for anything; its id is the invoice's
`payload`, so a payment names exactly what it pays for. The price in Stars is fixed on the row.
Pre-checkout (Telegram waits 10 s for the answer) re-checks everything that may have changed
since: the invoice is still open and the buyer's, the channel still sells and takes Stars (the
bot's rights intact: a channel that lost them is not active), the tier still exists, and its
Stars price is the one invoiced.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clock import Clock
from telepay.errors import InvalidInput
from telepay.models import (
    Channel, ChannelStatus, Invoice, InvoiceKind, InvoiceStatus, PaymentMethod, Tier,
)
from telepay.services.invoices import DONATE, Offer, offer
from telepay.services.stars import texts
from telepay.services.stars.pricing import MAX_STARS, offered_methods, tier_stars

logger = logging.getLogger(__name__)

SUBSCRIPTION_DAYS = 30  # Telegram's only subscription period (2592000 s)
SUBSCRIPTION_PERIOD = SUBSCRIPTION_DAYS * 86400


@dataclass(frozen=True)
class TierOptions:
    """How a tier can be paid: the methods offered, its Stars price, whether it can auto-renew."""

    methods: list[PaymentMethod]
    stars: int | None
    renewable: bool


@dataclass(frozen=True)
class StarsInvoice:
    """What the bot sends Telegram: payload = our invoice id."""

    payload: str
    title: str
    description: str
    label: str
    stars: int
    subscription: bool


def _cents(amount: Decimal) -> Decimal:
    return max(amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), Decimal("0.01"))


class StarsCheckout:
    """Opens XTR invoices and decides pre-checkout queries. Each method is one transaction."""

    def __init__(self, session_factory: sessionmaker[Session], clock: Clock, *, rate: Decimal,
                 stars_only: bool):
        self.session_factory = session_factory
        self.clock = clock
        self.rate = rate
        self.stars_only = stars_only

    def methods(self, session: Session, channel_id: int) -> list[PaymentMethod]:
        return offered_methods(session.get(Channel, channel_id), stars_only=self.stars_only)

    def options(self, session: Session, found: Offer) -> TierOptions:
        """What the tier card offers for `found` (a tier of a sellable channel)."""
        methods = self.methods(session, found.channel_id)
        tier = session.scalars(select(Tier).where(Tier.channel_id == found.channel_id,
                                                  Tier.number == found.number)).one()
        return TierOptions(methods, tier_stars(tier, self.rate), tier.days == SUBSCRIPTION_DAYS)

    def open_tier(self, user_id: int, username: str | None, key: str, number: int, *,
                  subscription: bool) -> StarsInvoice:
        with self.session_factory.begin() as session:
            found = offer(session, key, number)
            self._takes_stars(session, found.channel_id, found.title)
            tier = session.scalars(select(Tier).where(Tier.channel_id == found.channel_id,
                                                      Tier.number == number)).one()
            if subscription and tier.days != SUBSCRIPTION_DAYS:
                raise InvalidInput("Only 30-day plans can renew automatically in Stars.")
            stars = tier_stars(tier, self.rate)
            invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=found.channel_id,
                              tier_id=tier.id, buyer_user_id=user_id, buyer_username=username,
                              price_usd=tier.price_usd, days=tier.days, status=InvoiceStatus.PENDING,
                              method=PaymentMethod.STARS, price_stars=stars, star_subscription=subscription,
                              created_at=self.clock.now())
            session.add(invoice)
            logger.info("invoice %s: %s Stars for tier %s of channel %s%s", invoice.id, stars, number,
                        found.channel_id, " (Star subscription)" if subscription else "")
            what = f"{tier.days} days of access" + (", renews every 30 days" if subscription else "")
            return StarsInvoice(invoice.id, found.closed_title[:32], f"{found.closed_title}: {what}"[:255],
                                f"{tier.days} days", stars, subscription)

    def open_donation(self, user_id: int, username: str | None, key: str, stars: int) -> StarsInvoice:
        if not 1 <= stars <= MAX_STARS:
            raise InvalidInput(texts.DONATION_LIMITS)
        with self.session_factory.begin() as session:
            found = offer(session, key, DONATE)
            self._takes_stars(session, found.channel_id, found.title)
            invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.DONATION, channel_id=found.channel_id,
                              buyer_user_id=user_id, buyer_username=username,
                              price_usd=_cents(Decimal(stars) * self.rate), status=InvoiceStatus.PENDING,
                              method=PaymentMethod.STARS, price_stars=stars, created_at=self.clock.now())
            session.add(invoice)
            return StarsInvoice(invoice.id, f"Donation to {found.title}"[:32], f"A donation to “{found.title}”",
                                "Donation", stars, False)

    def _takes_stars(self, session: Session, channel_id: int, title: str) -> None:
        if PaymentMethod.STARS not in self.methods(session, channel_id):
            raise InvalidInput(texts.no_stars(title))

    def refusal(self, payload: str, user_id: int, currency: str, total_amount: int) -> str | None:
        """Why a pre-checkout query must be refused (words for the buyer), or None to accept."""
        with self.session_factory() as session:
            invoice = session.get(Invoice, payload) if _is_uuid(payload) else None
            if invoice is None or invoice.method != PaymentMethod.STARS or invoice.buyer_user_id != user_id:
                return texts.UNKNOWN_INVOICE
            if invoice.status != InvoiceStatus.PENDING:
                return texts.INVOICE_CLOSED
            channel = session.get(Channel, invoice.channel_id)
            if channel.status != ChannelStatus.ACTIVE:
                return texts.not_selling(channel.open_title)
            if PaymentMethod.STARS not in offered_methods(channel, stars_only=self.stars_only):
                return texts.no_stars(channel.open_title)
            if currency != "XTR" or total_amount != invoice.price_stars:
                return texts.PRICE_CHANGED
            if invoice.kind == InvoiceKind.SUBSCRIPTION:
                tier = session.get(Tier, invoice.tier_id)
                if tier is None or not tier.active:
                    return texts.TIER_GONE
                if tier_stars(tier, self.rate) != invoice.price_stars or tier.days != invoice.days:
                    return texts.PRICE_CHANGED
            return None


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False
