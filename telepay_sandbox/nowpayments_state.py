"""What the NOWPayments sandbox's HTTP side (`nowpayments_api`) needs of the sandbox itself
(`nowpayments.NowPaymentsSandbox`), stated apart so neither module imports the other."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol

from telepay.clock import Clock
from telepay_sandbox.nowpayments_ipn import Delivery
from telepay_sandbox.nowpayments_model import InvoiceState, PaymentState
from telepay_sandbox.provider import CallLog


class NowPaymentsState(CallLog, Protocol):
    """What the API reads and changes of its sandbox (`nowpayments.NowPaymentsSandbox`)."""

    api_keys: set[str]
    number_style: str
    rates: dict[str, Decimal]
    min_price_usd: Decimal
    clock: Clock
    invoices: dict[str, InvoiceState]
    payments: dict[int, PaymentState]
    accounts: dict[str, str]
    tokens: dict[str, datetime]
    list_auth: str
    delivery: Delivery

    @property
    def origin(self) -> str: ...

    def new_id(self, digits: int = 10) -> int: ...

    def new_token(self) -> str: ...

    def to_usd(self, amount: Decimal, currency: str) -> Decimal: ...

    def is_expired(self, invoice: InvoiceState) -> bool: ...

    def invoice(self, invoice_id: str) -> InvoiceState: ...

    def pay(self, invoice_id: str, *, currency: str = "eth", delivery: Delivery | None = None) -> int: ...
