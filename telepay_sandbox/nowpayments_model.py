"""NOWPayments sandbox: what the provider knows (invoices, payments, rates) as plain data.

`PaymentState.fields()` is the one place a payment becomes the body NOWPayments shows, both in
IPNs and in `GET /payment/{id}`, so the two never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

# USD per unit. Fiat is here too, so a price in any listed currency converts the same way.
DEFAULT_RATES = {
    "usd": Decimal(1), "eur": Decimal("1.08"),
    "eth": Decimal(2500), "btc": Decimal(60000), "ltc": Decimal(80), "trx": Decimal("0.12"),
    "sol": Decimal(150), "ton": Decimal(5), "usdterc20": Decimal(1), "usdttrc20": Decimal(1),
}
FIAT = {"usd", "eur"}
_SIX_DECIMALS = {"usdterc20", "usdttrc20", "trx"}
FULL_SEQUENCE = ("waiting", "confirming", "confirmed", "sending", "finished")
PARTIAL_SEQUENCE = ("waiting", "confirming", "partially_paid")
FAILED_SEQUENCE = ("waiting", "confirming", "failed")
REDEPOSIT_SEQUENCE = ("confirming", "confirmed", "sending", "finished")
INVOICE_LIFETIME = timedelta(minutes=20)


class SandboxError(Exception):
    """The test asked the buyer to do something NOWPayments would not allow."""


@dataclass
class InvoiceState:
    id: str
    api_key: str
    price_amount: Decimal
    price_currency: str
    pay_currency: str | None
    order_id: str | None
    order_description: str | None
    ipn_callback_url: str | None
    success_url: str | None
    cancel_url: str | None
    partially_paid_url: str | None
    is_fixed_rate: bool
    is_fee_paid_by_user: bool
    created_at: datetime
    payment_ids: list[int] = field(default_factory=list)
    expired: bool = False


def precision(currency: str) -> Decimal:
    return Decimal("0.000001") if currency in _SIX_DECIMALS else Decimal("0.00000001")


# Statuses in which the money has been seen: they report what actually arrived.
_PAID_STATUSES = {"confirming", "confirmed", "sending", "partially_paid", "finished", "failed", "refunded"}


def iso_millis(moment: datetime) -> str:
    """`2021-04-12T14:22:54.942Z`, the timestamp form NOWPayments uses."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class PaymentState:
    """One NOWPayments payment as the provider knows it (a snapshot is taken per status)."""

    payment_id: int
    invoice_id: int | None
    parent_payment_id: int | None
    api_key: str
    status: str
    pay_address: str
    pay_currency: str
    pay_amount: Decimal
    paid: Decimal  # what the buyer sends; reported as actually_paid once it is seen
    rate_usd: Decimal
    price_amount: Decimal
    price_currency: str
    order_id: str | None
    order_description: str | None
    purchase_id: str
    outcome_currency: str
    service_fee_rate: Decimal
    precision: Decimal
    ipn_callback_url: str | None
    created_at: datetime
    updated_at: datetime
    payin_hash: str | None = None
    payout_hash: str | None = None
    history: list[str] = field(default_factory=list)

    def fields(self, *, for_ipn: bool) -> dict[str, Any]:
        """The payment as NOWPayments shows it. An IPN is shaped as logged production IPNs are
        (quoted in public client tests): keys sorted, `updated_at` in epoch milliseconds and no
        `created_at`, `actually_paid_at_fiat` 0 even when finished; a re-deposit has null
        `invoice_id`, `order_id` and `order_description`, as NOWPayments' documented example."""
        seen = self.status in _PAID_STATUSES
        actually_paid = self.paid if seen else Decimal(0)
        basis = actually_paid if seen else self.pay_amount
        service_fee = (basis * self.service_fee_rate).quantize(self.precision)
        body: dict[str, Any] = {
            "payment_id": self.payment_id,
            "parent_payment_id": self.parent_payment_id,
            "invoice_id": self.invoice_id,
            "payment_status": self.status,
            "pay_address": self.pay_address,
            "payin_extra_id": None,
            "price_amount": self.price_amount,
            "price_currency": self.price_currency,
            "pay_amount": self.pay_amount,
            "actually_paid": actually_paid,
            "actually_paid_at_fiat": (actually_paid * self.rate_usd).quantize(Decimal("0.01")),
            "pay_currency": self.pay_currency,
            "order_id": self.order_id,
            "order_description": self.order_description,
            "purchase_id": self.purchase_id,
            "outcome_amount": basis - service_fee,
            "outcome_currency": self.outcome_currency,
            "payment_extra_ids": None,
            "fee": {"currency": self.pay_currency, "depositFee": Decimal(0), "withdrawalFee": Decimal(0),
                    "serviceFee": service_fee},
        }
        if for_ipn:
            body["updated_at"] = int(self.updated_at.timestamp() * 1000)
            body["actually_paid_at_fiat"] = 0  # what production IPNs carry: never rely on it
            if self.parent_payment_id is not None:
                body.update(invoice_id=None, order_id=None, order_description=None)
            return _sorted(body)
        # GET /payment/{id} and the payments list carry a few more, and ISO timestamps.
        body.update({"created_at": iso_millis(self.created_at), "updated_at": iso_millis(self.updated_at),
                     "payout_hash": self.payout_hash, "payin_hash": self.payin_hash,
                     "burning_percent": None, "type": "crypto2crypto"})
        return body


def _sorted(value: Any) -> Any:
    """Keys sorted at every level, as NOWPayments' IPN bodies arrive."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    return value


