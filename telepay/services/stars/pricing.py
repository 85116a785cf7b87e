"""Stars prices, the USD value of Stars, the owner's share of it, and the methods a channel offers.

A tier's Stars price is the owner's, or else its USD price at STARS_USD_RATE rounded *up* to a
whole Star (a buyer in Stars never pays the platform less than the USD price). Stars received
are worth Stars x rate in USD, exactly; that value is split like any payment (`split`): the
share rounded down to the micro-dollar, the fee the rest, so share + fee == value always.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from telepay.models import Channel, PaymentMethod, Tier
from telepay.services.payouts import split

MAX_STARS = 10000  # Telegram's ceiling for one Stars invoice and for a subscription's price


def default_stars(price_usd: Decimal, rate: Decimal) -> int:
    """ceil(price_usd / rate), at least 1 and at most MAX_STARS."""
    stars = int((price_usd / rate).to_integral_value(rounding=ROUND_CEILING))
    return min(max(stars, 1), MAX_STARS)


def tier_stars(tier: Tier, rate: Decimal) -> int:
    return tier.price_stars if tier.price_stars is not None else default_stars(tier.price_usd, rate)


def usd_value(stars: int, rate: Decimal) -> Decimal:
    if not isinstance(stars, int) or stars <= 0:
        raise ValueError(f"not a number of Stars: {stars!r}")
    return Decimal(stars) * rate


def stars_split(stars: int, rate: Decimal, fee_percent: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(USD value, owner share, platform fee) of `stars`; share + fee == value exactly."""
    value = usd_value(stars, rate)
    share, fee = split(value, fee_percent)
    return value, share, fee


def offered_methods(channel: Channel, *, stars_only: bool) -> list[PaymentMethod]:
    """The methods a buyer may choose for this channel, Stars first (Telegram's rule)."""
    methods = []
    if channel.accept_stars or stars_only:
        methods.append(PaymentMethod.STARS)
    if channel.accept_crypto and not stars_only:
        methods.append(PaymentMethod.CRYPTO)
    return methods
