"""What buyers, owners and operators read about Stars payments, in one place."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

DONATION_LIMITS = "Donations in Stars can be from 1 to 10,000 Stars."
UNKNOWN_INVOICE = ("This invoice isn't one of ours (or was made for someone else). "
                   "Please tap the channel's button again.")
INVOICE_CLOSED = "This invoice has already been paid or closed. Please tap the channel's button again."
PRICE_CHANGED = ("The price of this plan changed since this invoice was made, so nothing was charged. "
                 "Please tap the channel's button again to see the current price.")
TIER_GONE = ("This subscription option doesn't exist any more, so nothing was charged. "
             "Please tap a current button in the channel.")
TRY_AGAIN = "We couldn't check this payment in time, so nothing was charged. Please try again in a moment."


def no_stars(title: str) -> str:
    return f"“{title}” doesn't take Telegram Stars at the moment."


def not_selling(title: str) -> str:
    return f"“{title}” is not taking payments right now, so nothing was charged. Please try again later."


def stars(amount: int) -> str:
    return f"⭐ {amount:,} Stars"


def when(moment: datetime) -> str:
    return f"{moment:%d %b %Y, %H:%M} UTC"


def usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def received_for_review(amount: int) -> str:
    return (f"We received your payment of {stars(amount)} but couldn't match it to an order. "
            "Our team has been told and will sort it out — you don't need to do anything. "
            "You can also write to /paysupport.")


def operator_review(reason: str, charge_id: str, user_id: int, amount: int, detail: str) -> str:
    return (f"⭐ Stars payment needs review ({reason})\nCharge {charge_id} from user {user_id}: {stars(amount)}.\n"
            f"{detail}\nNothing was granted. Refund with: telepay payments refund {charge_id}")


def refunded_buyer(what: str, amount: int) -> str:
    return f"↩️ Your payment of {stars(amount)} for {what} was refunded. Access that came with it has ended."


def refunded_owner(what: str, amount: int, share_cancelled: Decimal | None) -> str:
    share = (f"\nYour held share of {usd(share_cancelled)} for it is cancelled." if share_cancelled is not None
             else "")
    return f"↩️ A payment of {stars(amount)} for {what} was refunded to the buyer.{share}"


def renewal_failed(title: str) -> str:
    return (f"⚠️ Your Star subscription to “{title}” could not renew. Your access ends with the period "
            "already paid; tap Renew in /mysubs to continue.")
