"""NOWPayments REST client: invoices, payment status, the payments list, estimates and minimums.

Synchronous over httpx (the bot calls it through `asyncio.to_thread`). Pointed at the real API
or at the sandbox by `base_url` alone (e.g. `https://api.nowpayments.io/v1`). Failures follow
`telepay.clients.http`: a 4xx is a `ProviderError` to apologise for, 5xx/429/timeouts are retried
and end in `ProviderUnavailable`. Amounts go out and come back as Decimal, never float.

The payments list (`GET /payment/`) is how a payment whose every IPN was lost is found. Its
authentication is unconfirmed: older docs ask only for `x-api-key`, newer ones also for
`Authorization: Bearer <JWT>` from `POST /auth {email, password}` (valid about 5 minutes). With
an email and password the client sends both (a token is fetched, kept for 4 minutes, and
fetched again once if refused); without them, the API key alone.

Invoice creation is retried like a read: a retry after a lost answer can leave an unused
duplicate invoice at NOWPayments, which is harmless (its URL is never shown to anyone, so
nobody pays it, and it expires).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

import httpx

from telepay.clients.http import (
    JsonHttp, OutcomeUnknown, ProviderError, ProviderFailure, ProviderUnavailable, to_decimal,
)

__all__ = ["NowPaymentsClient", "OutcomeUnknown", "ProviderError", "ProviderFailure", "ProviderInvoice",
           "ProviderUnavailable"]

PROVIDER = "NOWPayments"
_MONEY_FIELDS = ("price_amount", "pay_amount", "actually_paid", "actually_paid_at_fiat", "outcome_amount")
_FEE_FIELDS = ("depositFee", "withdrawalFee", "serviceFee")
_TOKEN_SECONDS = 240.0  # NOWPayments' JWT lives about 5 minutes; fetch a new one well before
LIST_PAGE = 500  # the most the payments list gives per page
MAX_PAGES = 200  # 100,000 payments in one window: far beyond any real one; a bound, not a limit


@dataclass(frozen=True)
class ProviderInvoice:
    id: str
    invoice_url: str
    order_id: str | None
    price_amount: Decimal


def _money(value: Any) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"money is Decimal, not {type(value).__name__}")
    if not value.is_finite() or value <= 0:
        raise ValueError("an amount must be positive")
    return value


class NowPaymentsClient:
    def __init__(self, base_url: str, api_key: str, timeout: float = 10.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None, *, backoff: float = 0.5,
                 email: str | None = None, password: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._http = JsonHttp(PROVIDER, base_url, "x-api-key", api_key, timeout=timeout, retries=retries,
                              backoff=backoff, transport=transport)
        self._login = {"email": email, "password": password} if email and password else None
        self._token: tuple[str, float] | None = None  # (JWT, when it was fetched)
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"NowPaymentsClient({self._http!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NowPaymentsClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def create_invoice(self, *, price_amount: Decimal, price_currency: str = "usd", order_id: str,
                       order_description: str, ipn_callback_url: str, success_url: str, cancel_url: str,
                       is_fixed_rate: bool = True, pay_currency: str | None = None,
                       partially_paid_url: str | None = None) -> ProviderInvoice:
        """Create a hosted invoice; its URL is what the buyer opens."""
        body: dict[str, Any] = {
            "price_amount": _money(price_amount), "price_currency": price_currency, "order_id": order_id,
            "order_description": order_description, "ipn_callback_url": ipn_callback_url,
            "success_url": success_url, "cancel_url": cancel_url, "is_fixed_rate": is_fixed_rate,
        }
        if pay_currency is not None:
            body["pay_currency"] = pay_currency
        if partially_paid_url is not None:
            body["partially_paid_url"] = partially_paid_url
        answer = self._http.request("POST", "/invoice", body=body)
        try:
            return ProviderInvoice(id=str(answer["id"]), invoice_url=str(answer["invoice_url"]),
                                   order_id=answer.get("order_id"),
                                   price_amount=to_decimal(answer.get("price_amount")) or price_amount)
        except (KeyError, TypeError, ArithmeticError):
            raise ProviderUnavailable(PROVIDER, "invoice answer lacks id or invoice_url") from None

    def get_payment(self, payment_id: int | str) -> dict[str, Any]:
        """The payment as NOWPayments reports it (the same fields as an IPN), amounts as Decimal."""
        if not str(payment_id).isdigit():
            raise ValueError("a NOWPayments payment id is a number")
        answer = self._http.request("GET", f"/payment/{payment_id}")
        if not isinstance(answer, dict):
            raise ProviderUnavailable(PROVIDER, "payment answer is not an object")
        return _amounts(answer)

    def list_payments(self, date_from: datetime, date_to: datetime) -> list[dict[str, Any]]:
        """Every payment of the account created between the two moments (all pages, oldest
        first), each with the fields of `get_payment`, amounts as Decimal."""
        payments: list[dict[str, Any]] = []
        for page in range(MAX_PAGES):
            params = {"limit": LIST_PAGE, "page": page, "sortBy": "created_at", "orderBy": "asc",
                      "dateFrom": _when(date_from), "dateTo": _when(date_to)}
            answer = self._authorised("GET", "/payment/", params)
            data = answer.get("data") if isinstance(answer, dict) else None
            if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
                raise ProviderUnavailable(PROVIDER, "payments list answer has no data list")
            payments.extend(_amounts(item) for item in data)
            pages = answer.get("pagesCount")
            if not data or not isinstance(pages, (int, Decimal)) or page + 1 >= pages:
                break
        return payments

    def _authorised(self, method: str, path: str, params: dict[str, Any]) -> Any:
        if self._login is None:
            return self._http.request(method, path, params=params)
        try:
            return self._http.request(method, path, params=params, headers=self._bearer(fresh=False))
        except ProviderError as refused:
            if refused.status not in (401, 403):
                raise
            # The token may have expired early: one new one, one more try.
            return self._http.request(method, path, params=params, headers=self._bearer(fresh=True))

    def _bearer(self, *, fresh: bool) -> dict[str, str]:
        now = self._monotonic()
        if fresh or self._token is None or now - self._token[1] > _TOKEN_SECONDS:
            answer = self._http.request("POST", "/auth", body=self._login)
            token = answer.get("token") if isinstance(answer, dict) else None
            if not isinstance(token, str) or not token:
                raise ProviderUnavailable(PROVIDER, "auth answer has no token")
            self._token = (token, now)
        return {"Authorization": f"Bearer {self._token[0]}"}

    def estimate(self, amount: Decimal, currency_from: str, currency_to: str) -> Decimal:
        """How much `currency_to` `amount` of `currency_from` is worth now."""
        answer = self._http.request("GET", "/estimate", params={
            "amount": _money(amount), "currency_from": currency_from, "currency_to": currency_to})
        return self._field(answer, "estimated_amount")

    def min_amount(self, currency_from: str, currency_to: str) -> Decimal:
        """The smallest payment in `currency_from` NOWPayments accepts for this pair."""
        answer = self._http.request("GET", "/min-amount", params={
            "currency_from": currency_from, "currency_to": currency_to})
        return self._field(answer, "min_amount")

    @staticmethod
    def _field(answer: Any, name: str) -> Decimal:
        value = to_decimal(answer.get(name)) if isinstance(answer, dict) else None
        if value is None:
            raise ProviderUnavailable(PROVIDER, f"answer lacks {name}")
        return value


def _amounts(payment: dict[str, Any]) -> dict[str, Any]:
    """A payment's money fields as Decimal (they come as JSON numbers or numeric strings)."""
    for name in _MONEY_FIELDS:
        if name in payment:
            payment[name] = to_decimal(payment[name])
    if isinstance(payment.get("fee"), dict):
        for name in _FEE_FIELDS:
            if name in payment["fee"]:
                payment["fee"][name] = to_decimal(payment["fee"][name])
    return payment


def _when(moment: datetime) -> str:
    """`2026-12-02T10:00:00.000Z`: the ISO form NOWPayments' list takes for dateFrom/dateTo."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
