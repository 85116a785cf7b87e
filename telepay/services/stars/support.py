"""/paysupport requests and the texts /privacy and /terms answer.

Telegram's Bot Platform Developer Terms require a bot that takes payments to answer /paysupport
(§6.2.1) and to have a privacy policy it shows on /privacy (§4). The shipped texts are sensible
defaults; an operator replaces them with `telepay texts set privacy|terms FILE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from telepay.models import (
    Channel, Invoice, InvoiceKind, LegalText, Payment, StarPayment, SupportRequest,
)
from telepay.services.jobs import JobQueue
from telepay.services.messages import alert_operators
from telepay.services.notifications import request_owner_notification

MAX_TEXT = 4000  # one Telegram message, with room to spare
DEFAULTS = {
    "privacy": (
        "🔒 Privacy policy\n\n"
        "What we keep: your Telegram id and username, what you bought or donated, when, and how you "
        "paid (the payment's id at Telegram or at our crypto processor). We keep it to give you "
        "access, to answer /paysupport, to pay channel owners and because accounting law requires "
        "payment records.\n\n"
        "Who sees it: the channel's owner sees your username and the sale; our payment processors "
        "see the payment. We never sell it.\n\n"
        "Your rights: ask via /paysupport to see or delete what we keep about you; payment records "
        "are kept as long as the law requires."),
    "terms": (
        "📄 Terms\n\n"
        "You buy access to a private channel for the time shown, or make a donation. Access starts "
        "when the payment is confirmed and ends when the time is up, unless it renews (Stars "
        "subscriptions renew every 30 days until you cancel in /mysubs).\n\n"
        "Channel owners decide what their channel contains; TelePay delivers access and payments.\n\n"
        "If we cannot deliver what you paid for, we refund it. Problems with a payment: /paysupport."),
}


def legal_text(session: Session, name: str) -> str:
    row = session.get(LegalText, name)
    return row.text if row is not None else DEFAULTS[name]


def set_legal_text(session: Session, name: str, text: str, now: datetime) -> None:
    session.execute(insert(LegalText).values(name=name, text=text, updated_at=now)
                    .on_conflict_do_update(index_elements=["name"], set_={"text": text, "updated_at": now}))


@dataclass(frozen=True)
class PaymentChoice:
    ref: str          # "stars:<id>" or "crypto:<id>"
    label: str        # what the buyer sees on the button
    channel_id: int | None


def recent_payments(session: Session, user_id: int, limit: int = 8) -> list[PaymentChoice]:
    """The buyer's latest payments, Stars and crypto, newest first, for /paysupport to pick from."""
    choices: list[tuple[datetime, PaymentChoice]] = []
    stars = session.execute(
        select(StarPayment, Invoice, Channel).outerjoin(Invoice, Invoice.id == StarPayment.invoice_id)
        .outerjoin(Channel, Channel.id == Invoice.channel_id).where(StarPayment.user_id == user_id)
        .order_by(StarPayment.received_at.desc()).limit(limit))
    for row, invoice, channel in stars:
        what = _what(invoice, channel)
        choices.append((row.received_at, PaymentChoice(f"stars:{row.id}", f"⭐ {row.stars} · {what} · "
                                                       f"{row.received_at:%d %b}", channel.id if channel else None)))
    crypto = session.execute(
        select(Payment, Invoice, Channel).join(Invoice, Invoice.id == Payment.invoice_id)
        .join(Channel, Channel.id == Invoice.channel_id)
        .where(Invoice.buyer_user_id == user_id, Payment.pay_currency != "XTR")
        .order_by(Payment.created_at.desc()).limit(limit))
    for payment, invoice, channel in crypto:
        choices.append((payment.created_at, PaymentChoice(
            f"crypto:{payment.id}", f"💳 ${invoice.price_usd:,.2f} · {_what(invoice, channel)} · "
            f"{payment.created_at:%d %b}", channel.id)))
    return [choice for _, choice in sorted(choices, key=lambda pair: pair[0], reverse=True)[:limit]]


def _what(invoice: Invoice | None, channel: Channel | None) -> str:
    if invoice is None or channel is None:
        return "unmatched payment"
    if invoice.kind == InvoiceKind.SUBSCRIPTION:
        return channel.closed_title[:24]
    return f"donation {channel.open_title[:16]}"


def open_request(session: Session, jobs: JobQueue, user_id: int, username: str | None, ref: str | None,
                 message: str, now: datetime) -> int:
    """Keep the buyer's words about one of their payments (None: none on record); tell the
    operators and, when the payment names a channel, its owner."""
    choice = PaymentChoice("none", "no payment on record", None)
    if ref is not None:
        choice = next((c for c in recent_payments(session, user_id, limit=50) if c.ref == ref), None)
        if choice is None:
            raise LookupError(f"payment {ref} is not one of user {user_id}'s")
    request = SupportRequest(user_id=user_id, payment_ref=choice.ref, channel_id=choice.channel_id,
                             message=message[:MAX_TEXT], created_at=now)
    session.add(request)
    session.flush()
    who = f"@{username}" if username else f"user {user_id}"
    text = f"🆘 /paysupport #{request.id} from {who} about {choice.label} ({choice.ref}):\n\n{message[:3000]}"
    alert_operators(session, jobs, text, key=f"support:{request.id}")
    if choice.channel_id is not None:
        request_owner_notification(session, jobs, choice.channel_id, text, idempotency_key=f"support:{request.id}")
    return request.id
