"""Buyers' and donors' invoices: what a deep link offers, our invoice rows, the provider's invoices.

A deep link names a channel key and a tier number (or "donate"), never a price: the price and
the duration always come from the database. Creating an invoice is two short transactions
around one provider call (no transaction is held while NOWPayments answers): our row first,
so the provider's `order_id` names it, then the provider's id and URL. A buyer who presses
"Pay" again gets their open invoice back instead of a second one.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from telepay.clients.nowpayments import ProviderFailure
from telepay.clock import Clock
from telepay.errors import InvalidInput, NotFound, TelePayError
from telepay.models import Channel, ChannelStatus, Invoice, InvoiceKind, InvoiceStatus, Tier

logger = logging.getLogger(__name__)

DONATE = "donate"
DONATION_MIN, DONATION_MAX = Decimal("4.99"), Decimal("9999.99")
# Fixed-rate invoices expire 20 minutes after creation; offer one again only well before that.
REUSE_WINDOW = timedelta(minutes=15)
_PAYLOAD = re.compile(r"^([A-Za-z0-9]{6,16})-([1-9]\d?|donate)$")

UNKNOWN_LINK = ("Sorry, I don't recognise this link. It may be mistyped or outdated — please tap "
                "the button in the channel again.")


class InvoiceUnavailable(TelePayError):
    """The payment provider did not give us an invoice; `invoice_id` can be retried."""

    code = "provider_unavailable"
    status = 503

    def __init__(self, message: str, invoice_id: str):
        super().__init__(message)
        self.invoice_id = invoice_id


def payload_for(key: str, target: int | str) -> str:
    return f"{key}-{target}"


def parse_payload(payload: str) -> tuple[str, int | str]:
    """(channel key, tier number or "donate"); InvalidInput for anything else."""
    match = _PAYLOAD.match(payload or "")
    if not match:
        raise InvalidInput(UNKNOWN_LINK, code="bad_link")
    key, target = match.groups()
    return key, target if target == DONATE else int(target)


def parse_donation(amount: str) -> Decimal:
    """The keypad's text as a donation amount, or InvalidInput naming the limits."""
    limits = f"Donations can be from ${DONATION_MIN:,.2f} to ${DONATION_MAX:,.2f}."
    if not re.fullmatch(r"\d{1,4}(\.\d{0,2})?", amount or ""):
        raise InvalidInput("Please enter an amount first. " + limits)
    value = Decimal(amount.rstrip(".") or "0").quantize(Decimal("0.01"))
    if not DONATION_MIN <= value <= DONATION_MAX:
        raise InvalidInput(f"${value:,.2f} is not possible. " + limits)
    return value


@dataclass(frozen=True)
class Offer:
    channel_id: int
    key: str
    title: str
    closed_title: str
    number: int | None
    price_usd: Decimal | None
    days: int | None


@dataclass(frozen=True)
class InvoiceView:
    id: str
    kind: InvoiceKind
    title: str
    price_usd: Decimal
    days: int | None
    url: str


def _sellable(session: Session, key: str) -> Channel:
    channel = session.scalars(select(Channel).where(Channel.key == key)).one_or_none()
    if channel is None:
        raise NotFound(UNKNOWN_LINK, code="bad_link")
    if channel.status != ChannelStatus.ACTIVE:
        raise NotFound(f"“{channel.open_title}” is not taking payments right now. Please try again later.",
                       code="inactive")
    return channel


def offer(session: Session, key: str, target: int | str) -> Offer:
    """What a deep link offers: a tier of an active channel, or a donation to it."""
    channel = _sellable(session, key)
    if target == DONATE:
        return Offer(channel.id, key, channel.open_title, channel.closed_title, None, None, None)
    tier = session.scalars(select(Tier).where(Tier.channel_id == channel.id, Tier.number == target,
                                              Tier.active)).one_or_none()
    if tier is None:
        raise NotFound(f"This subscription option of “{channel.open_title}” doesn't exist (any more). "
                       "Please tap a current button in the channel.", code="no_tier")
    return Offer(channel.id, key, channel.open_title, channel.closed_title, tier.number, tier.price_usd, tier.days)


def channel_offers(session: Session, key: str) -> list[Offer]:
    """Every active tier of the channel, for "Renew"."""
    channel = _sellable(session, key)
    return [Offer(channel.id, key, channel.open_title, channel.closed_title, t.number, t.price_usd, t.days)
            for t in channel.tiers if t.active]


def _title(invoice: Invoice, channel: Channel) -> str:
    """A subscription buys the closed channel; a donation goes to the channel people know."""
    return channel.closed_title if invoice.kind == InvoiceKind.SUBSCRIPTION else channel.open_title


class InvoiceService:
    """Opens invoices; each public method runs its own short transactions around the provider."""

    def __init__(self, session_factory: sessionmaker[Session], provider: Any, clock: Clock, *,
                 ipn_callback_url: str | None, success_url: str, cancel_url: str, stars_only: bool = False):
        self.session_factory = session_factory
        self.stars_only = stars_only
        self.provider = provider
        self.clock = clock
        self.ipn_callback_url = ipn_callback_url
        self.success_url = success_url
        self.cancel_url = cancel_url

    def open_subscription(self, user_id: int, username: str | None, key: str, number: int) -> InvoiceView:
        now = self.clock.now()
        with self.session_factory.begin() as session:
            found = offer(session, key, number)
            self._takes_crypto(session, found)
            tier_id = session.scalars(select(Tier.id).where(Tier.channel_id == found.channel_id,
                                                            Tier.number == number)).one()
            reusable = session.scalars(
                select(Invoice).where(Invoice.buyer_user_id == user_id, Invoice.tier_id == tier_id,
                                      Invoice.kind == InvoiceKind.SUBSCRIPTION,
                                      Invoice.status == InvoiceStatus.PENDING,
                                      Invoice.price_usd == found.price_usd, Invoice.days == found.days,
                                      Invoice.created_at > now - REUSE_WINDOW)
                .order_by(Invoice.created_at.desc()).limit(1)).one_or_none()
            if reusable is not None and reusable.invoice_url:
                return self._view(reusable, found.closed_title)
            invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.SUBSCRIPTION, channel_id=found.channel_id,
                              tier_id=tier_id, buyer_user_id=user_id, buyer_username=username,
                              price_usd=found.price_usd, days=found.days, created_at=now)
            session.add(invoice)
        return self._create_at_provider(invoice.id)

    def open_donation(self, user_id: int, username: str | None, key: str, amount: Decimal) -> InvoiceView:
        amount = parse_donation(str(amount))
        with self.session_factory.begin() as session:
            found = offer(session, key, DONATE)
            self._takes_crypto(session, found)
            invoice = Invoice(id=str(uuid.uuid4()), kind=InvoiceKind.DONATION, channel_id=found.channel_id,
                              buyer_user_id=user_id, buyer_username=username, price_usd=amount,
                              created_at=self.clock.now())
            session.add(invoice)
        return self._create_at_provider(invoice.id)

    def _takes_crypto(self, session: Session, found: Offer) -> None:
        """STARS_ONLY, or an owner who switched crypto off: no crypto invoice (Stars are offered)."""
        channel = session.get(Channel, found.channel_id)
        if self.stars_only or not channel.accept_crypto:
            raise InvalidInput(f"“{found.title}” takes Telegram Stars only. Please choose ⭐ Stars.",
                               code="no_crypto")

    def retry(self, invoice_id: str, user_id: int) -> InvoiceView:
        """Try the provider again for an invoice it refused (or return it if it has a URL now)."""
        with self.session_factory() as session:
            invoice = session.get(Invoice, invoice_id)
            if invoice is None or invoice.buyer_user_id != user_id:
                raise NotFound("I can't find that invoice. Please open the channel's link again.")
            if invoice.status == InvoiceStatus.PENDING and invoice.invoice_url:
                return self._view(invoice, _title(invoice, session.get(Channel, invoice.channel_id)))
            if invoice.status != InvoiceStatus.CREATED:
                raise NotFound("This invoice is closed. Please open the channel's link again.")
        return self._create_at_provider(invoice_id)

    def _create_at_provider(self, invoice_id: str) -> InvoiceView:
        with self.session_factory() as session:
            invoice = session.get(Invoice, invoice_id)
            title = _title(invoice, session.get(Channel, invoice.channel_id))
        if self.ipn_callback_url is None:
            logger.error("invoice %s: PUBLIC_BASE_URL is not set, so NOWPayments could not reach us", invoice_id)
        description = (f"{title}: {invoice.days} days of access" if invoice.kind == InvoiceKind.SUBSCRIPTION
                       else f"Donation to {title}")
        try:
            if self.ipn_callback_url is None:
                raise ProviderFailure("NOWPayments", "no IPN callback URL configured")
            created = self.provider.create_invoice(
                price_amount=invoice.price_usd, price_currency="usd", order_id=invoice.id,
                order_description=description[:200], ipn_callback_url=self.ipn_callback_url,
                success_url=self.success_url, cancel_url=self.cancel_url, is_fixed_rate=True,
            )
        except ProviderFailure as error:
            logger.warning("invoice %s: provider refused: %s", invoice_id, error)
            with self.session_factory.begin() as session:
                session.get(Invoice, invoice_id).provider_error = str(error)[:2000]
            raise InvoiceUnavailable("Sorry — our payment provider didn't respond just now, so I "
                                      "couldn't create your invoice. Please try again in a moment.",
                                      invoice_id) from None
        with self.session_factory.begin() as session:
            row = session.get(Invoice, invoice_id, with_for_update=True)
            if row.status == InvoiceStatus.CREATED:
                row.provider_invoice_id = str(created.id)
                row.invoice_url = created.invoice_url
                row.status = InvoiceStatus.PENDING
                row.provider_error = None
            logger.info("invoice %s: provider invoice %s for %s USD", invoice_id, created.id, row.price_usd)
            return self._view(row, title)

    @staticmethod
    def _view(invoice: Invoice, title: str) -> InvoiceView:
        return InvoiceView(invoice.id, invoice.kind, title, invoice.price_usd, invoice.days, invoice.invoice_url)
