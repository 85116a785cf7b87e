"""A loopback emulator of NOWPayments for tests, the demo and benchmarks.

`NowPaymentsSandbox` serves the REST API the product calls (`base_url` ends in `/v1`; see
`nowpayments_api`) and plays the buyer: `pay()` makes a payment on an invoice and delivers the
signed IPNs NOWPayments would send, step by step, to the invoice's `ipn_callback_url`.

    with NowPaymentsSandbox("api-key", "ipn-secret") as nowpayments:
        invoice = client.create_invoice(...)              # the product, over HTTP
        payment_id = nowpayments.pay(invoice.id)          # waiting -> ... -> finished
        nowpayments.pay(other.id, amount_usd=Decimal(3))  # -> partially_paid
        nowpayments.redeposit(payment_id)                 # a child payment (parent_payment_id)

The payments list (`GET /v1/payment/?dateFrom&dateTo&page&limit`) is served in the documented
shape; which authentication it takes is unconfirmed at NOWPayments, so the sandbox can play
either: the API key alone (`list_auth="api-key"`, the default), or the API key plus
`Authorization: Bearer <JWT>` from `POST /v1/auth {email, password}` (`list_auth="jwt"`; the
accounts are set with `add_account`; a token lasts 5 minutes of the sandbox clock).

Crypto amounts come from a settable table of USD rates (`rates`), in Decimal. Delivery is
shaped by `Delivery` (repeats, concurrency, order, delays, resends on non-2xx); every attempt
and its answer is kept in `ipns`. Fixed-rate invoices expire 20 minutes after creation without
a payment (the `clock` can be moved forward). All methods are thread-safe.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from decimal import ROUND_UP, Decimal
from typing import Any

from telepay.clock import Clock, SystemClock
from telepay_sandbox.loopback import LoopbackServer
from telepay_sandbox.provider import Call, Faults
from telepay_sandbox.nowpayments_api import NowPaymentsApi
from telepay_sandbox.nowpayments_ipn import Courier, Delivery, Ipn, IpnRecord, arrange, build_ipn
from telepay_sandbox.nowpayments_model import (
    DEFAULT_RATES, FAILED_SEQUENCE, FULL_SEQUENCE, INVOICE_LIFETIME, PARTIAL_SEQUENCE, REDEPOSIT_SEQUENCE,
    InvoiceState, PaymentState, SandboxError, precision,
)

__all__ = ["Delivery", "InvoiceState", "IpnRecord", "NowPaymentsSandbox", "PaymentState", "SandboxError"]


class NowPaymentsSandbox:
    """The emulator and its test-side controls (it is the `NowPaymentsState` its API reads)."""

    def __init__(self, api_key: str, ipn_secret: str, *, rates: dict[str, Decimal] | None = None,
                 number_style: str = "decimal", delivery: Delivery = Delivery(),
                 outcome_currency: str | None = None, service_fee_rate: Decimal = Decimal("0.005"),
                 min_price_usd: Decimal = Decimal("1"), clock: Clock | None = None, seed: int | None = None,
                 host: str = "127.0.0.1", port: int = 0, list_auth: str = "api-key") -> None:
        if list_auth not in ("api-key", "jwt"):
            raise ValueError("list_auth is 'api-key' or 'jwt'")
        if not api_key or not ipn_secret:
            raise ValueError("the sandbox needs an API key and an IPN secret")
        self.api_keys = {api_key}
        self.ipn_secret = ipn_secret
        self.rates = dict(DEFAULT_RATES if rates is None else rates)
        self.number_style = number_style
        self.delivery = delivery
        self.outcome_currency = outcome_currency  # None: the merchant keeps the coin paid
        self.service_fee_rate = service_fee_rate
        self.min_price_usd = min_price_usd
        self.clock = clock or SystemClock()
        self.lock = threading.RLock()
        self.invoices: dict[str, InvoiceState] = {}
        self.payments: dict[int, PaymentState] = {}
        self.calls: list[Call] = []
        self.faults = Faults()
        self.list_auth = list_auth
        self.accounts: dict[str, str] = {}  # email -> password, for POST /v1/auth
        self.tokens: dict[str, datetime] = {}  # JWT -> when it was issued
        self._random = random.Random(seed)
        self._courier = Courier()
        self._server = LoopbackServer(NowPaymentsApi(self), "nowpayments", host, port)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> NowPaymentsSandbox:
        self._server.start()
        return self

    def stop(self) -> None:
        self._courier.wait_idle(timeout=10)
        self._courier.close()
        self._server.stop()

    def __enter__(self) -> NowPaymentsSandbox:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        return self._server.origin

    @property
    def base_url(self) -> str:
        """What NOWPAYMENTS_BASE_URL should be: `http://127.0.0.1:PORT/v1`."""
        return self.origin + "/v1"

    # ---- set-up ------------------------------------------------------------------------------

    def add_api_key(self, api_key: str) -> None:
        """Another merchant: its key works, but it cannot see this merchant's payments."""
        with self.lock:
            self.api_keys.add(api_key)

    def add_account(self, email: str, password: str) -> None:
        """A dashboard login, for `POST /v1/auth` (the JWT the payments list may want)."""
        with self.lock:
            self.accounts[email] = password

    def set_rate(self, currency: str, usd: Decimal) -> None:
        with self.lock:
            self.rates[currency.lower()] = Decimal(usd)

    def fail_next(self, route: str, *, method: str | None = None, status: int | None = None, count: int = 1,
                  delay: float = 0.0, retry_after: int | None = None) -> None:
        """Fail the next `count` requests to `route` or below it (e.g. "/v1/payment"), of `method`
        if given.

        With `status` they are refused with NOWPayments' error body and nothing happens; without
        it they are served, but the answer is held back `delay` seconds (a client timeout while
        the work is done, as on a slow day)."""
        self.faults.add(route, method, status, count, delay, retry_after)

    # ---- looking --------------------------------------------------------------------------------

    @property
    def ipns(self) -> list[IpnRecord]:
        return list(self._courier.records)

    @property
    def given_up(self) -> list[tuple[int, str]]:
        """(payment id, status) of every IPN whose deliveries all failed: NOWPayments sends it no more."""
        return [(ipn.payment_id, ipn.status) for ipn in self._courier.given_up]

    def ipns_for(self, payment_id: int) -> list[IpnRecord]:
        return [record for record in self.ipns if record.payment_id == payment_id]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until background deliveries are done; False if they were not within `timeout`."""
        return self._courier.wait_idle(timeout)

    def invoice(self, invoice_id: str) -> InvoiceState:
        with self.lock:
            try:
                return self.invoices[str(invoice_id)]
            except KeyError:
                raise SandboxError(f"no invoice {invoice_id}") from None

    def payment(self, payment_id: int) -> PaymentState:
        with self.lock:
            try:
                return self.payments[int(payment_id)]
            except KeyError:
                raise SandboxError(f"no payment {payment_id}") from None

    def to_usd(self, amount: Decimal, currency: str) -> Decimal:
        return amount * self._rate(currency)

    def _rate(self, currency: str) -> Decimal:
        try:
            return self.rates[currency.lower()]
        except KeyError:
            raise SandboxError(f"the sandbox has no rate for {currency!r}") from None

    def is_expired(self, invoice: InvoiceState) -> bool:
        if invoice.expired:
            return True
        return (invoice.is_fixed_rate and not invoice.payment_ids
                and self.clock.now() - invoice.created_at > INVOICE_LIFETIME)

    def new_id(self, digits: int = 10) -> int:
        return self._random.randrange(10 ** (digits - 1) * 4, 10**digits)

    def new_token(self) -> str:
        """A dashboard JWT, as opaque to the sandbox as to its clients."""
        return "eyJ" + self._random.randbytes(24).hex()

    # ---- the buyer ---------------------------------------------------------------------------

    def pay(self, invoice_id: str, *, currency: str = "eth", amount_usd: Decimal | None = None,
            partial: bool = False, fail: bool = False, statuses: tuple[str, ...] | None = None,
            delivery: Delivery | None = None) -> int:
        """Pay an invoice and deliver its IPNs; returns the payment id.

        The full price (default) runs waiting -> confirming -> confirmed -> sending -> finished;
        less than the price (`amount_usd`, or `partial=True` for half) ends in partially_paid;
        `fail=True` ends in failed; `statuses` gives the exact steps."""
        with self.lock:
            invoice = self.invoice(invoice_id)
            if self.is_expired(invoice):
                raise SandboxError(f"invoice {invoice_id} has expired")
            if invoice.pay_currency and invoice.pay_currency != currency.lower():
                raise SandboxError(f"invoice {invoice_id} takes only {invoice.pay_currency}")
            payment = self._new_payment(invoice, currency.lower())
            if amount_usd is not None:
                paid = (Decimal(amount_usd) / payment.rate_usd).quantize(payment.precision)
                if amount_usd >= self.to_usd(invoice.price_amount, invoice.price_currency):
                    paid = max(paid, payment.pay_amount)
            elif partial:
                paid = (payment.pay_amount / 2).quantize(payment.precision)
            else:
                paid = payment.pay_amount
            if partial and paid >= payment.pay_amount:
                raise ValueError("a partial payment must be less than the price")
            payment.paid = paid
            if statuses is None:
                statuses = FAILED_SEQUENCE if fail else FULL_SEQUENCE if paid >= payment.pay_amount \
                    else PARTIAL_SEQUENCE
            ipns = self._advance(payment, statuses)
        self._courier.send(arrange(ipns, delivery or self.delivery), delivery or self.delivery)
        return payment.payment_id

    def redeposit(self, payment_id: int, *, amount_usd: Decimal | None = None,
                  delivery: Delivery | None = None) -> int:
        """Another deposit to the same address: a new payment whose parent is `payment_id`."""
        with self.lock:
            parent = self.payment(payment_id)
            invoice = self.invoice(str(parent.invoice_id))
            child = self._new_payment(invoice, parent.pay_currency, parent_payment_id=parent.payment_id,
                                      pay_address=parent.pay_address)
            if amount_usd is not None:
                child.paid = (Decimal(amount_usd) / child.rate_usd).quantize(child.precision)
            else:
                child.paid = child.pay_amount
            child.pay_amount = child.paid  # NOWPayments bills a repeat deposit at what arrived
            ipns = self._advance(child, REDEPOSIT_SEQUENCE)
        self._courier.send(arrange(ipns, delivery or self.delivery), delivery or self.delivery)
        return child.payment_id

    def refund(self, payment_id: int, *, delivery: Delivery | None = None) -> None:
        with self.lock:
            ipns = self._advance(self.payment(payment_id), ("refunded",))
        self._courier.send(ipns, delivery or self.delivery)

    def expire(self, invoice_id: str, *, currency: str = "eth", delivery: Delivery | None = None) -> int:
        """Let the invoice run out: the buyer picked a coin (a waiting payment) and never paid."""
        with self.lock:
            invoice = self.invoice(invoice_id)
            waiting = [self.payments[p] for p in invoice.payment_ids if self.payments[p].status == "waiting"]
            if invoice.payment_ids and not waiting:
                raise SandboxError(f"invoice {invoice_id} has been paid into; it cannot expire")
            payment = waiting[0] if waiting else self._new_payment(invoice, currency.lower())
            ipns = self._advance(payment, ("expired",) if waiting else ("waiting", "expired"))
            invoice.expired = True
        self._courier.send(ipns, delivery or self.delivery)
        return payment.payment_id

    def resend(self, payment_id: int, status: str | None = None, *, delivery: Delivery | None = None) -> None:
        """A manual resend from the dashboard: the IPN of `status` (default: the current one)."""
        with self.lock:
            payment = self.payment(payment_id)
            status = status or payment.status
            if status not in payment.history:
                raise SandboxError(f"payment {payment_id} never was {status}")
            current = payment.status
            payment.status = status
            ipn = build_ipn(payment, self.ipn_secret, self.number_style)
            payment.status = current
        self._courier.send([ipn], delivery or self.delivery)

    def _new_payment(self, invoice: InvoiceState, currency: str, *, parent_payment_id: int | None = None,
                     pay_address: str | None = None) -> PaymentState:
        rate = self._rate(currency)
        step = precision(currency)
        price_usd = self.to_usd(invoice.price_amount, invoice.price_currency)
        now = self.clock.now()
        payment = PaymentState(
            payment_id=self.new_id(), invoice_id=int(invoice.id), parent_payment_id=parent_payment_id,
            api_key=invoice.api_key, status="waiting", pay_address=pay_address or self._address(currency),
            pay_currency=currency, pay_amount=(price_usd / rate).quantize(step, rounding=ROUND_UP),
            paid=Decimal(0), rate_usd=rate, price_amount=invoice.price_amount,
            price_currency=invoice.price_currency, order_id=invoice.order_id,
            order_description=invoice.order_description, purchase_id=str(self.new_id()),
            outcome_currency=self.outcome_currency or currency, service_fee_rate=self.service_fee_rate,
            precision=step, ipn_callback_url=invoice.ipn_callback_url, created_at=now, updated_at=now)
        self.payments[payment.payment_id] = payment
        invoice.payment_ids.append(payment.payment_id)
        return payment

    def _advance(self, payment: PaymentState, statuses: tuple[str, ...]) -> list[Ipn]:
        """Walk the payment through `statuses`, one signed IPN per step (sent by the caller)."""
        ipns = []
        for status in statuses:
            payment.status = status
            payment.history.append(status)
            payment.updated_at = max(self.clock.now(), payment.updated_at + timedelta(milliseconds=1))
            if status == "confirming" and payment.payin_hash is None:
                payment.payin_hash = "0x" + self._random.randbytes(32).hex()
            if status == "finished":
                payment.payout_hash = "0x" + self._random.randbytes(32).hex()
            if payment.ipn_callback_url:
                ipns.append(build_ipn(payment, self.ipn_secret, self.number_style))
        return ipns

    def _address(self, currency: str) -> str:
        if currency in ("eth", "usdterc20"):
            return "0x" + self._random.randbytes(20).hex()
        alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
        return {"trx": "T", "usdttrc20": "T", "btc": "bc1q", "ltc": "ltc1q"}.get(currency, "") + "".join(
            self._random.choice(alphabet) for _ in range(33))
