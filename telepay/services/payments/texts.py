"""What buyers, donors, owners and operators are told about a payment, in one place.

Plain functions of the facts, so the wording can be read (and tested) without a database.
Amounts are Decimals formatted here; crypto amounts keep the provider's digits.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from telepay.services.payouts import Allocation
from telepay.models.channels import PayoutStrategy


def usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def crypto(amount: Decimal | None, currency: str | None) -> str:
    if amount is None:
        return "an unknown amount"
    text = format(amount.normalize(), "f") if amount else "0"
    return f"{text} {(currency or '').upper()}".strip()


def when(moment: datetime) -> str:
    return f"{moment:%d %b %Y, %H:%M} UTC"


def buyer_name(username: str | None, user_id: int) -> str:
    return f"@{username}" if username else f"user id {user_id}"


# ---- buyers and donors --------------------------------------------------------------------------

def payment_seen(what: str) -> str:
    return (f"⏳ Your payment for {what} has reached the blockchain. I'll message you again as soon as "
            "it is confirmed — usually within a few minutes.")


def invite(title: str, expires_at: datetime, renewed: bool) -> str:
    first = (f"✅ Payment received — your subscription to “{title}” is extended until {when(expires_at)}."
             if renewed else
             f"✅ Payment received — welcome! Your subscription to “{title}” is active until {when(expires_at)}.")
    return (first + "\n\nTap the button below to join the channel. The link is made for you alone: "
            "I approve your request automatically, and it stops working once you're in.")


def already_member(title: str, expires_at: datetime) -> str:
    return (f"✅ Payment received — your subscription to “{title}” is extended until {when(expires_at)}. "
            "You're already in the channel, so there's nothing else to do.")


def fresh_invite(title: str) -> str:
    return (f"🔑 Here is a new personal invite to “{title}”. Any earlier link I sent you no longer "
            "works. Tap the button to join; I approve your request automatically.")


def join_button(title: str) -> str:
    return f"🔓 Join {title}"[:64]


def thanks(title: str, amount: Decimal) -> str:
    return (f"💝 Thank you! Your donation of {usd(amount)} to “{title}” has arrived. The channel's owner "
            "has been told — your support means a lot.")


def thanks_in(title: str, paid: str) -> str:
    """Thanks for a donation paid in something other than dollars ("⭐ 100 Stars")."""
    return (f"💝 Thank you! Your donation of {paid} to “{title}” has arrived. The channel's owner "
            "has been told — your support means a lot.")


def partially_paid(what: str, paid: str, missing: str, missing_usd: Decimal | None) -> str:
    about = f" (about {usd(missing_usd)})" if missing_usd is not None and missing_usd > 0 else ""
    return (f"⚠️ Your payment for {what} arrived, but it is less than the price: we received {paid}, "
            f"so {missing}{about} is missing.\n\nNothing has been activated yet. Send the missing amount to "
            "the same address from your invoice and I'll continue as soon as it is confirmed. If the "
            "invoice has already closed, our team will sort it out with you.")


def failed(what: str) -> str:
    return (f"❌ Your payment for {what} failed, so nothing was activated. If coins left your wallet, "
            "NOWPayments returns them. You're welcome to try again: tap the button in the channel for a "
            "new invoice.")


def expired(what: str) -> str:
    return (f"⌛ Your invoice for {what} expired before a payment arrived, so it is closed. Tap the button "
            "in the channel whenever you'd like a new one.")


def refunded(what: str) -> str:
    return (f"↩️ Your payment for {what} was refunded to you by NOWPayments, so nothing was activated. "
            "You're welcome to try again with a new invoice.")


def extra_payment(what: str, paid: str) -> str:
    return (f"💬 We received another payment of {paid} for {what}. Extra payments aren't applied "
            "automatically — our team will review it and get back to you.")


# ---- owners --------------------------------------------------------------------------------------

def owner_sale(*, title: str, tier: str | None, buyer: str, at: datetime, allocation: Allocation) -> str:
    head = (f"💰 New subscription to “{title}”\n{tier}" if tier else f"💝 New donation to “{title}”")
    lines = [head, f"Amount: {usd(allocation.arrived_usd)}", f"From: {buyer}", f"Time: {when(at)}",
             payout_line(allocation)]
    return "\n".join(lines)


def owner_sale_held(*, title: str, tier: str | None, buyer: str, at: datetime, paid: str, value_usd: Decimal,
                    share_usd: Decimal, until: datetime) -> str:
    """A Stars sale: the share waits for Telegram's withdrawal hold before it is paid out."""
    head = (f"💰 New subscription to “{title}”\n{tier}" if tier else f"💝 New donation to “{title}”")
    return "\n".join([head, f"Amount: {paid} ({usd(value_usd)})", f"From: {buyer}", f"Time: {when(at)}",
                      f"Your share: {usd(share_usd)}, paid out after {when(until)} (Telegram holds Stars "
                      "that long)."])


def payout_line(allocation: Allocation) -> str:
    share = usd(allocation.owner_share_usd)
    if allocation.strategy == PayoutStrategy.THRESHOLD:
        held = usd(allocation.held_usd or Decimal(0))
        threshold = usd(allocation.threshold_usd) if allocation.threshold_usd is not None else "your threshold"
        return f"Your share: {share}, held for your next payout ({held} of {threshold} so far)."
    if allocation.payout_id is not None:
        return f"Your share: {share} — payout #{allocation.payout_id} started."
    return f"Your share: {share}."


# ---- operators -----------------------------------------------------------------------------------

def operator_note(what: str, payment_ref: str, invoice_id: str, detail: str) -> str:
    return f"{what}\nPayment {payment_ref}, invoice {invoice_id}.\n{detail}\nNothing was done automatically."


# ---- refunds after fulfilment -------------------------------------------------------------------

def refunded_access_ended(title: str, days: int | None, until: datetime | None, ended: bool) -> str:
    """The buyer, after a refund of a purchase they were given (`days` None: a donation)."""
    if days is None:
        return f"↩️ Your donation to “{title}” was refunded to you. Thank you all the same!"
    head = (f"↩️ Your payment for “{title}” ({days} days) was refunded to you, so the {days} days it paid for "
            "are taken back")
    if ended or until is None:
        return f"{head} and your access has ended. You're welcome to subscribe again any time."
    return f"{head}: your subscription now runs until {when(until)}."


def refunded_owner(title: str, days: int | None, buyer: str, share: Decimal | None, outcome: str,
                   payout_id: int | None) -> str:
    """The owner, after a refund of a sale or a donation: what happens to their share."""
    head = (f"↩️ A donation to “{title}” from {buyer} was refunded to the donor." if days is None else
            f"↩️ A payment for “{title}” ({days} days) from {buyer} was refunded to the buyer, and the access it "
            "bought was taken back.")
    if share is None:
        return head
    if outcome == "sent":
        return (f"{head} Your share of {usd(share)} was already sent (payout #{payout_id}); our team will be in "
                "touch about it.")
    return f"{head} Your share of {usd(share)} from it is cancelled and will not be paid out."


def refund_alert(*, payment_id: int, ref: str, invoice_id: str, paid: str, buyer: str, channel: str,
                 source: str, access: str, share: str) -> str:
    """Operators: a refund after fulfilment, naming everything it touched and what acts on it."""
    return (f"↩️ Refund after fulfilment ({source})\n"
            f"Payment {payment_id} (NOWPayments {ref}), invoice {invoice_id}: {paid} from {buyer}, {channel}.\n"
            f"Access: {access}\n"
            f"Owner's share: {share}\n"
            f"`telepay payments show {payment_id}`")
