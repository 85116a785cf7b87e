"""An owner's channel settings: parsing form input, reviewing a draft, and applying it at once.

The bot collects edits in a draft (JSON in the owner's user_data: amounts as strings) and
nothing changes until "Save all changes". Saving applies every edit in one transaction and
writes the audit log; a payout-address change must have been confirmed by the owner first.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from telepay.clock import Clock
from telepay.errors import InvalidInput
from telepay.models import AuditLog, Channel, ChannelStatus, PayoutCurrency, PayoutStrategy, Tier
from telepay.services.broadcasts import POST_JOB
from telepay.services.channels import owned_channel
from telepay.services.jobs import JobQueue

logger = logging.getLogger(__name__)

MAX_TIERS = 3
PRICE_MIN, PRICE_MAX = Decimal("1.00"), Decimal("9999.99")
DAYS_MIN, DAYS_MAX = 1, 3650
THRESHOLD_MIN, THRESHOLD_MAX = Decimal("20"), Decimal("1000000")
REPOST_CHOICES = (6, 12, 24, 48, 72, 168)
STARS_MIN, STARS_MAX = 1, 10000  # Telegram's range for one Stars invoice
DONATION_TEXT_MAX = 1000
DEFAULT_DONATION_TEXT = "Enjoying this channel? You can support it with a donation in crypto. Thank you! 💙"
_AMOUNT = re.compile(r"^\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?\s*(?:\$|usd)?$", re.IGNORECASE)


class AddressValidator(Protocol):
    def validate_address(self, currency_network: str, address: str) -> tuple[bool, str]: ...


def parse_usd(text: str, low: Decimal, high: Decimal, what: str) -> Decimal:
    """A USD amount with at most two decimals within [low, high]; the message names the limits."""
    match = _AMOUNT.match(text.strip())
    limits = f"between ${low:,.2f} and ${high:,.2f}"
    if not match:
        raise InvalidInput(f"Please send the {what} as a number {limits}, for example 9.99.")
    amount = Decimal(match.group(1).replace(",", "") + "." + (match.group(2) or "0")).quantize(Decimal("0.01"))
    if not low <= amount <= high:
        raise InvalidInput(f"The {what} must be {limits}.")
    return amount


def parse_days(text: str) -> int:
    try:
        days = int(text.strip().removesuffix("days").removesuffix("d").strip())
    except ValueError:
        days = 0
    if not DAYS_MIN <= days <= DAYS_MAX:
        raise InvalidInput(f"Please send the duration as a whole number of days from {DAYS_MIN} to {DAYS_MAX:,}.")
    return days


def parse_stars(text: str) -> int | None:
    """A tier's Stars price: whole Stars, or 0 / "auto" for the USD price at STARS_USD_RATE (None)."""
    text = text.strip().lower().removesuffix("stars").strip().replace(",", "")
    if text in ("0", "auto"):
        return None
    if not text.isdigit() or not STARS_MIN <= int(text) <= STARS_MAX:
        raise InvalidInput(f"Please send the Stars price as a whole number from {STARS_MIN} to {STARS_MAX:,} "
                           "(or 0 to follow the USD price).")
    return int(text)


def check_donation_text(text: str) -> str:
    text = text.strip()
    if not 1 <= len(text) <= DONATION_TEXT_MAX:
        raise InvalidInput(f"The donation post text must be 1 to {DONATION_TEXT_MAX} characters long.")
    return text


@dataclass
class Effective:
    """A channel's settings as they would be after the draft is applied."""

    tiers: dict[int, tuple[Decimal, int] | None]
    currency: str | None
    network: str | None
    address: str | None
    strategy: PayoutStrategy
    threshold: Decimal | None
    notify: bool
    notify_chat_id: int | None
    donation_text: str
    repost_hours: int
    stars: dict[int, int | None] = field(default_factory=dict)  # owner-set Stars prices (None: automatic)
    accept_crypto: bool = True
    accept_stars: bool = True
    changed: set[str] = field(default_factory=set)

    def as_audit(self) -> dict[str, Any]:
        return {
            "tiers": {str(n): (None if t is None else {"price_usd": str(t[0]), "days": t[1]})
                      for n, t in sorted(self.tiers.items())},
            "payout_currency": self.currency, "payout_network": self.network,
            "payout_address": self.address, "payout_strategy": self.strategy.value,
            "payout_threshold_usd": None if self.threshold is None else str(self.threshold),
            "notify_enabled": self.notify, "notify_chat_id": self.notify_chat_id,
            "donation_text": self.donation_text, "repost_interval_hours": self.repost_hours,
            "stars_prices": {str(n): price for n, price in sorted(self.stars.items()) if price is not None},
            "accept_crypto": self.accept_crypto, "accept_stars": self.accept_stars,
        }


def current(channel: Channel) -> Effective:
    tiers = {tier.number: (tier.price_usd, tier.days) if tier.active else None for tier in channel.tiers}
    return Effective(
        tiers=tiers, currency=channel.payout_currency, network=channel.payout_network,
        address=channel.payout_address, strategy=channel.payout_strategy,
        threshold=channel.payout_threshold_usd, notify=channel.notify_enabled,
        notify_chat_id=channel.notify_chat_id, donation_text=channel.donation_text or DEFAULT_DONATION_TEXT,
        repost_hours=channel.repost_interval_hours,
        stars={tier.number: tier.price_stars for tier in channel.tiers if tier.active},
        accept_crypto=channel.accept_crypto, accept_stars=channel.accept_stars,
    )


def merge(channel: Channel, draft: dict[str, Any]) -> Effective:
    """The channel's settings with the draft laid over them; `changed` names what differs."""
    before = current(channel)
    after = current(channel)
    for number, edit in (draft.get("tiers") or {}).items():
        number = int(number)
        if not 1 <= number <= MAX_TIERS:
            continue  # not a tier the form offers (a forged button): never saved, never blocks a save
        if edit is None:
            after.tiers[number] = None
            after.stars.pop(number, None)
            continue
        if "stars" in edit:
            after.stars[number] = edit["stars"]
        tier = after.tiers.get(number)
        price = Decimal(edit["price"]) if edit.get("price") else (tier[0] if tier else None)
        days = edit.get("days") or (tier[1] if tier else None)
        if price is None or days is None:
            raise InvalidInput(f"Tier {number} needs both a price and a duration before it can be saved.")
        after.tiers[number] = (price, int(days))
    if "currency" in draft:
        after.currency, after.network = draft["currency"].split(":")
    if "address" in draft:
        after.address = draft["address"]
    if "strategy" in draft:
        after.strategy = PayoutStrategy(draft["strategy"])
    if "threshold" in draft:
        after.threshold = Decimal(draft["threshold"])
    if "notify" in draft:
        after.notify = bool(draft["notify"])
    if "notify_chat_id" in draft:
        after.notify_chat_id = draft["notify_chat_id"]
    if "donation_text" in draft:
        after.donation_text = draft["donation_text"]
    if "repost_hours" in draft:
        after.repost_hours = int(draft["repost_hours"])
    after.accept_crypto = bool(draft.get("accept_crypto", after.accept_crypto))
    after.accept_stars = bool(draft.get("accept_stars", after.accept_stars))
    old, new = before.as_audit(), after.as_audit()
    after.changed = {name for name in new if new[name] != old[name]}
    return after


@dataclass(frozen=True)
class Review:
    """What saving the draft would do: a list of changes, and whether the address changes."""

    changes: list[str]
    address_change: tuple[str | None, str] | None
    network: str | None
    network_label: str | None


@dataclass(frozen=True)
class Applied:
    activated: bool
    reposted: bool
    address_change: tuple[str | None, str] | None
    network_label: str | None


def check_address_format(option: PayoutCurrency | None, address: str) -> None:
    """The one local address check: the network's pattern (PayoutCurrency.address_pattern)."""
    if option is None or not re.match(option.address_pattern, address):
        raise InvalidInput(f"“{address[:80]}” is not a valid {option.name if option else ''} address. "
                           "Please check it for typos.")


class SetupService:
    def __init__(self, jobs: JobQueue, clock: Clock, address_validator: AddressValidator | None):
        self.jobs = jobs
        self.clock = clock
        self.address_validator = address_validator

    @staticmethod
    def currencies(session: Session) -> list[PayoutCurrency]:
        return list(session.scalars(select(PayoutCurrency).where(PayoutCurrency.active)
                                    .order_by(PayoutCurrency.code, PayoutCurrency.network)))

    def review(self, session: Session, channel_id: int, user_id: int, draft: dict[str, Any]) -> Review:
        """Validate the whole draft against the channel; raise InvalidInput naming what is wrong."""
        channel = owned_channel(session, channel_id, user_id)
        after = merge(channel, draft)
        if not after.changed:
            raise InvalidInput("There are no changes to save.")
        label = None
        if after.currency:
            option = session.get(PayoutCurrency, (after.currency, after.network))
            if option is None or not option.active:
                raise InvalidInput("That payout currency is no longer supported; please pick another.")
            label = option.name
            if after.address:
                check_address_format(option, after.address)
        if after.address and not after.currency:
            raise InvalidInput("Please choose the payout currency for this address.")
        if not (after.accept_crypto or after.accept_stars):
            raise InvalidInput("Buyers need a way to pay: keep Telegram Stars or crypto switched on.")
        if after.strategy == PayoutStrategy.THRESHOLD and (after.threshold or 0) < THRESHOLD_MIN:
            raise InvalidInput(f"The payout threshold must be at least ${THRESHOLD_MIN:,.2f}.")
        address_change = None
        if {"payout_address", "payout_currency", "payout_network"} & after.changed and after.address:
            address_change = (channel.payout_address, after.address)
        return Review(sorted(after.changed), address_change, after.network, label)

    @staticmethod
    def check_address(session: Session, channel_id: int, user_id: int, draft: dict[str, Any], address: str) -> str:
        """The owner's typed address against the draft's (or else the channel's) payout network, by
        format; returns the network, for `check_address_remotely`."""
        channel = owned_channel(session, channel_id, user_id)
        code, network = (draft.get("currency") or f"{channel.payout_currency}:{channel.payout_network}").split(":")
        check_address_format(session.get(PayoutCurrency, (code, network)), address)
        return network

    def check_address_remotely(self, network: str, address: str) -> None:
        """ChangeNOW's own check, after the local format check; no session is held meanwhile."""
        if self.address_validator is None:
            logger.warning("no ChangeNOW client configured; address checked locally only")
            return
        try:
            valid, message = self.address_validator.validate_address(network, address)
        except Exception:  # noqa: BLE001 - any failure of the check means "not checked"
            logger.warning("ChangeNOW address validation failed", exc_info=True)
            raise InvalidInput("I couldn't verify this address with our exchange partner right now. "
                               "Nothing was saved; please try “Save all changes” again in a minute.") from None
        if not valid:
            detail = f" ({message})" if message else ""
            raise InvalidInput(f"Our exchange partner says “{address}” is not a valid address on "
                               f"the {network.upper()} network{detail}. Nothing was saved.")

    def apply(self, session: Session, channel_id: int, user_id: int, draft: dict[str, Any],
              address_confirmed: bool) -> Applied:
        """Apply every edit in the draft, audit it, and queue new posts when what they show changed."""
        review = self.review(session, channel_id, user_id, draft)
        if review.address_change and not address_confirmed:
            raise InvalidInput("Please confirm the new payout address first.")
        channel = owned_channel(session, channel_id, user_id, lock=True)
        before, after = current(channel), merge(channel, draft)
        now = self.clock.now()
        by_number = {tier.number: tier for tier in channel.tiers}
        for number, value in after.tiers.items():
            tier = by_number.get(number)
            if value is None:
                if tier is not None:
                    tier.active = False  # kept: old invoices point at it
            elif tier is None:
                channel.tiers.append(Tier(number=number, price_usd=value[0], days=value[1], active=True))
            else:
                tier.price_usd, tier.days, tier.active = value[0], value[1], True
        for tier in channel.tiers:
            if tier.number in after.stars:
                tier.price_stars = after.stars[tier.number]
        channel.accept_crypto, channel.accept_stars = after.accept_crypto, after.accept_stars
        channel.payout_currency, channel.payout_network = after.currency, after.network
        channel.payout_address = after.address
        channel.payout_strategy, channel.payout_threshold_usd = after.strategy, after.threshold
        channel.notify_enabled, channel.notify_chat_id = after.notify, after.notify_chat_id
        channel.donation_text, channel.repost_interval_hours = after.donation_text, after.repost_hours
        channel.updated_at = now
        session.add(AuditLog(channel_id=channel.id, actor_user_id=user_id, action="settings.update",
                             before=before.as_audit(), after=after.as_audit(), created_at=now))
        if review.address_change:
            session.add(AuditLog(
                channel_id=channel.id, actor_user_id=user_id, action="payout_address.change",
                before={"currency": before.currency, "network": before.network, "address": before.address},
                after={"currency": after.currency, "network": after.network, "address": after.address,
                       "confirmed": True},
                created_at=now))
            logger.info("channel %s payout address changed by user %s", channel.id, user_id)
        ready = any(value is not None for value in after.tiers.values()) and bool(after.address)
        activated = False
        if channel.status == ChannelStatus.SETUP and ready:
            channel.status, activated = ChannelStatus.ACTIVE, True
        elif channel.status == ChannelStatus.ACTIVE and not ready:
            channel.status = ChannelStatus.SETUP
        shown = {"tiers", "donation_text", "stars_prices", "accept_crypto", "accept_stars"} & after.changed
        reposted = channel.status == ChannelStatus.ACTIVE and (activated or bool(shown))
        if reposted:
            # Not the "Post now" cooldown: the owner changed what the posts say.
            self.jobs.enqueue(session, POST_JOB, {"channel_id": channel.id, "reason": "settings"})
        session.flush()
        return Applied(activated, reposted, review.address_change, review.network_label)
