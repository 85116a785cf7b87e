"""A payment's state from the IPNs stored for it: the furthest status, and whether enough arrived.

Statuses are ranked waiting < confirming < confirmed < sending < partially_paid < failed = expired
< finished < refunded. A payment only moves up the ranks, so a late or repeated IPN never moves it
back. `finished` outranks `failed` and `expired`: a `finished` after either means the money did
arrive (a late deposit NOWPayments credited after all), so it is fulfilled, never dropped
(docs/decisions.md); a `failed` or `expired` after `finished` changes nothing. Only `refunded`
follows `finished`: the provider may return money at any time. A status we don't know ranks
nowhere: it is stored and reviewed (`unknown`), and moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from telepay.models import Invoice, Payment, PaymentEvent, PaymentStatus

S = PaymentStatus
RANK = {S.WAITING: 0, S.CONFIRMING: 1, S.CONFIRMED: 2, S.SENDING: 3, S.PARTIALLY_PAID: 4,
        S.FAILED: 5, S.EXPIRED: 5, S.FINISHED: 6, S.REFUNDED: 7}
KNOWN = frozenset(status.value for status in S)
# Money has been seen on chain, but the payment has not ended yet.
IN_FLIGHT = frozenset({S.CONFIRMING, S.CONFIRMED, S.SENDING})
ENDED = frozenset({S.FINISHED, S.FAILED, S.EXPIRED, S.REFUNDED})


def furthest(events: Iterable[PaymentEvent]) -> PaymentEvent | None:
    """The event that decides the payment's status, from its events in arrival order."""
    decisive: PaymentEvent | None = None
    for event in events:
        try:
            status = S(event.status)
        except ValueError:
            continue  # a status this version does not know moves nothing
        if decisive is None or RANK[status] > RANK[S(decisive.status)]:
            decisive = event
    return decisive


def unknown(events: Iterable[PaymentEvent]) -> list[PaymentEvent]:
    """The events whose status this version does not know (e.g. a merchant-set `cancelled`)."""
    return [event for event in events if event.status not in KNOWN]


def price_mismatch(body: dict[str, Any], price_usd: Decimal) -> str | None:
    """What differs between the price an IPN reports and our invoice's, or None.

    NOWPayments echoes the invoice's `price_amount` and `price_currency` in every payment of it;
    a different figure means the invoice was not the one we made (or the IPN secret leaked), so
    it never completes anything. A missing figure is no evidence either way."""
    amount = _decimal(body.get("price_amount"))
    currency = body.get("price_currency")
    if currency is not None and str(currency).lower() != "usd":
        return f"price currency {str(currency)[:32]!r}, ours is USD"
    if amount is not None and amount != price_usd:
        return f"price {amount} USD, ours is {price_usd} USD"
    return None


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def apply_amounts(payment: Payment, body: dict[str, Any]) -> None:
    """Copy the amounts the deciding IPN reports (stored as strings, read as Decimal)."""
    for attr, name in (("pay_amount", "pay_amount"), ("actually_paid", "actually_paid"),
                       ("actually_paid_usd", "actually_paid_at_fiat"), ("price_amount", "price_amount"),
                       ("outcome_amount", "outcome_amount")):
        value = _decimal(body.get(name))
        if value is not None:
            setattr(payment, attr, value)
    for attr in ("pay_currency", "outcome_currency"):
        if body.get(attr):
            setattr(payment, attr, str(body[attr])[:32])


@dataclass(frozen=True)
class Shortfall:
    """How much of the price is missing (crypto in the paid coin, and roughly in USD)."""

    missing: Decimal | None
    missing_usd: Decimal | None


def shortfall(payment: Payment, invoice: Invoice, tolerance_percent: Decimal) -> Shortfall | None:
    """None if what arrived covers the price within the tolerance; else what is missing.

    The coin amount asked (`pay_amount`) against the coin amount received is the exact test for a
    fixed-rate invoice; the USD value NOWPayments reports is the fallback (it is sometimes 0 or
    absent). With neither, nothing is assumed paid: an operator looks."""
    keep = (Decimal(100) - tolerance_percent) / Decimal(100)
    if payment.pay_amount and payment.actually_paid is not None:
        if payment.actually_paid >= payment.pay_amount * keep:
            return None
        missing = payment.pay_amount - payment.actually_paid
        return Shortfall(missing, (invoice.price_usd * missing / payment.pay_amount).quantize(Decimal("0.01")))
    if payment.actually_paid_usd:
        if payment.actually_paid_usd >= invoice.price_usd * keep:
            return None
        return Shortfall(None, invoice.price_usd - payment.actually_paid_usd)
    return Shortfall(None, None)
