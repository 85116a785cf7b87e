"""NOWPayments sandbox: the HTTP side (REST API under /v1 and the buyer's invoice page).

Answers are shaped like NOWPayments': `201` with the invoice (its `price_amount` a string),
errors as `{"status":false,"statusCode":N,"code":"...","message":"..."}`, `x-api-key` checked on
every API call, a payment visible only to the key that created its invoice. Numbers in answers
are JSON numbers spelled in the sandbox's style, never floats.
"""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone
from dataclasses import replace
from decimal import ROUND_UP, Decimal
from typing import Any

from telepay.clients import jsontext
from telepay_sandbox.loopback import Request, Response
from telepay_sandbox.nowpayments_model import FIAT, InvoiceState, SandboxError, iso_millis, precision
from telepay_sandbox.nowpayments_state import NowPaymentsState
from telepay_sandbox.provider import ProviderApi, ProviderError

_PAYMENT = re.compile(r"/v1/payment/([^/]+)/?")
_PAGE = re.compile(r"/invoice/(\d+)/?")
_PAGE_PAY = re.compile(r"/invoice/(\d+)/pay/?")
_URL_FIELDS = ("ipn_callback_url", "success_url", "cancel_url", "partially_paid_url")
_TEXT_FIELDS = ("order_id", "order_description")
_STOCK = {
    400: "INVALID_REQUEST_PARAMS", 403: "INVALID_API_KEY", 404: "NOT_FOUND", 429: "TOO_MANY_REQUESTS",
    500: "INTERNAL_ERROR", 502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT",
}


TOKEN_LIFETIME = timedelta(minutes=5)


def _date(value: str | None) -> datetime | None:
    """dateFrom/dateTo: `2026-12-02` or `2026-12-02T10:00:00.000Z`, as NOWPayments takes them."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"invalid date {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class ApiError(ProviderError):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code or _STOCK.get(status, "ERROR")

    def response(self) -> Response:
        body = {"status": False, "statusCode": self.status, "code": self.code, "message": self.message}
        return Response(self.status, jsontext.dumps(body).encode())


def _number(body: dict[str, Any], name: str, *, required: bool) -> Decimal | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, f'"{name}" is required')
        return None
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
        raise ApiError(400, f'"{name}" must be a number')
    try:
        number = Decimal(value)  # Joi converts numeric strings, so NOWPayments accepts "15"
    except ArithmeticError:
        raise ApiError(400, f'"{name}" must be a number') from None
    if not number.is_finite() or number <= 0:
        raise ApiError(400, f'"{name}" must be a positive number')
    return number


class NowPaymentsApi(ProviderApi):
    def __init__(self, sandbox: NowPaymentsState) -> None:
        super().__init__(sandbox)
        self.sandbox = sandbox

    def injected(self, status: int) -> Response:
        return ApiError(status, "Injected failure" if status < 500 else "Internal server error").response()

    def route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path.startswith("/v1/"):
            if method == "GET" and path.rstrip("/") == "/v1/status":
                return self._json(200, {"message": "OK"})
            self._authenticate(request)
            if method == "POST" and path.rstrip("/") == "/v1/invoice":
                return self._create_invoice(request)
            if method == "POST" and path.rstrip("/") == "/v1/auth":
                return self._auth(request)
            if method == "GET" and path.rstrip("/") == "/v1/payment":
                return self._list_payments(request)
            if method == "GET" and (match := _PAYMENT.fullmatch(path)):
                return self._payment(request, match.group(1))
            if method == "GET" and path.rstrip("/") == "/v1/estimate":
                return self._estimate(request.query)
            if method == "GET" and path.rstrip("/") == "/v1/min-amount":
                return self._min_amount(request.query)
        elif method == "GET" and (match := _PAGE.fullmatch(path)):
            return self._page(match.group(1))
        elif method == "POST" and (match := _PAGE_PAY.fullmatch(path)):
            return self._page_pay(match.group(1), request)
        raise ApiError(404, f"Cannot {method} {path}")

    def _json(self, status: int, body: Any) -> Response:
        return Response(status, jsontext.dumps(body, self.sandbox.number_style).encode())

    def _authenticate(self, request: Request) -> str:
        key = request.headers.get("x-api-key") or ""
        if key not in self.sandbox.api_keys:
            raise ApiError(403, "Invalid api key", "INVALID_API_KEY")
        return key

    def _currency(self, value: Any, name: str, *, crypto_only: bool = False) -> str:
        if not isinstance(value, str) or not value:
            raise ApiError(400, f'"{name}" is required')
        currency = value.lower()
        if currency not in self.sandbox.rates or (crypto_only and currency in FIAT):
            raise ApiError(400, f"Currency {value} was not found", "CURRENCY_NOT_FOUND")
        return currency

    def _create_invoice(self, request: Request) -> Response:
        try:
            body = request.json_body()
        except ValueError:
            raise ApiError(400, "Unexpected token in JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, '"value" must be of type object')
        price = _number(body, "price_amount", required=True)
        price_currency = self._currency(body.get("price_currency"), "price_currency")
        pay_currency = body.get("pay_currency")
        if pay_currency is not None:
            pay_currency = self._currency(pay_currency, "pay_currency", crypto_only=True)
        for name in _URL_FIELDS:
            value = body.get(name)
            if value is not None and not (isinstance(value, str) and re.match(r"https?://[^\s/]+", value)):
                raise ApiError(400, f'"{name}" must be a valid uri')
        for name in _TEXT_FIELDS:
            if body.get(name) is not None and not isinstance(body[name], str):
                raise ApiError(400, f'"{name}" must be a string')
        for name in ("is_fixed_rate", "is_fee_paid_by_user"):
            if body.get(name) is not None and not isinstance(body[name], bool):
                raise ApiError(400, f'"{name}" must be a boolean')
        sandbox = self.sandbox
        if sandbox.to_usd(price, price_currency) < sandbox.min_price_usd:
            raise ApiError(400, "amountTo is too small", "AMOUNT_MINIMAL_ERROR")
        with sandbox.lock:
            invoice = InvoiceState(
                id=str(sandbox.new_id()), api_key=request.headers.get("x-api-key") or "", price_amount=price,
                price_currency=price_currency, pay_currency=pay_currency,
                order_id=body.get("order_id"), order_description=body.get("order_description"),
                **{name: body.get(name) for name in _URL_FIELDS},
                is_fixed_rate=bool(body.get("is_fixed_rate", False)),
                is_fee_paid_by_user=bool(body.get("is_fee_paid_by_user", False)),
                created_at=sandbox.clock.now())
            sandbox.invoices[invoice.id] = invoice
        stamp = iso_millis(invoice.created_at)
        return self._json(201, {
            "id": invoice.id, "token_id": str(sandbox.new_id()), "order_id": invoice.order_id,
            "order_description": invoice.order_description,
            "price_amount": jsontext.number_text(price, "js"),  # a string, as NOWPayments answers
            "price_currency": price_currency, "pay_currency": pay_currency,
            "ipn_callback_url": invoice.ipn_callback_url,
            "invoice_url": f"{sandbox.origin}/invoice/{invoice.id}",
            "success_url": invoice.success_url, "cancel_url": invoice.cancel_url,
            "partially_paid_url": invoice.partially_paid_url, "payout_currency": None,
            "created_at": stamp, "updated_at": stamp,
            "is_fixed_rate": invoice.is_fixed_rate, "is_fee_paid_by_user": invoice.is_fee_paid_by_user,
        })

    def _payment(self, request: Request, raw_id: str) -> Response:
        if not raw_id.isdigit():
            raise ApiError(400, '"payment_id" must be a number')
        with self.sandbox.lock:
            payment = self.sandbox.payments.get(int(raw_id))
            if payment is None or payment.api_key != request.headers.get("x-api-key"):
                raise ApiError(404, "Payment not found", "PAYMENT_NOT_FOUND")
            return self._json(200, payment.fields(for_ipn=False))

    def _auth(self, request: Request) -> Response:
        try:
            body = request.json_body()
        except ValueError:
            raise ApiError(400, "Unexpected token in JSON") from None
        sandbox = self.sandbox
        with sandbox.lock:
            if not isinstance(body, dict) or sandbox.accounts.get(body.get("email")) != body.get("password") \
                    or body.get("email") is None:
                raise ApiError(403, "Invalid credentials", "INVALID_CREDENTIALS")
            token = sandbox.new_token()
            sandbox.tokens[token] = sandbox.clock.now()
        return self._json(200, {"token": token})

    def _list_payments(self, request: Request) -> Response:
        """`GET /v1/payment/`: the merchant's payments created between dateFrom and dateTo."""
        sandbox = self.sandbox
        if sandbox.list_auth == "jwt":
            given = request.headers.get("authorization") or ""
            token = given[len("Bearer "):] if given.startswith("Bearer ") else ""
            with sandbox.lock:
                issued = sandbox.tokens.get(token)
            if issued is None or sandbox.clock.now() - issued > TOKEN_LIFETIME:
                raise ApiError(401, "Authorization header is empty (Bearer JWTtoken is required)",
                               "AUTH_REQUIRED")
        query = request.query
        try:
            limit = int(query.get("limit", "10"))
            page = int(query.get("page", "0"))
        except ValueError:
            raise ApiError(400, '"limit" and "page" must be numbers') from None
        if not 1 <= limit <= 500 or page < 0:
            raise ApiError(400, '"limit" must be 1..500 and "page" 0 or more')
        date_from, date_to = _date(query.get("dateFrom")), _date(query.get("dateTo"))
        key = request.headers.get("x-api-key")
        with sandbox.lock:
            payments = [p for p in sandbox.payments.values() if p.api_key == key
                        and (date_from is None or p.created_at >= date_from)
                        and (date_to is None or p.created_at <= date_to)]
            payments.sort(key=lambda p: (p.created_at, p.payment_id), reverse=query.get("orderBy") == "desc")
            shown = [p.fields(for_ipn=False) for p in payments[page * limit:(page + 1) * limit]]
        pages = (len(payments) + limit - 1) // limit
        return self._json(200, {"data": shown, "limit": limit, "page": page, "pagesCount": pages,
                                "total": len(payments)})

    def _estimate(self, query: dict[str, str]) -> Response:
        amount = _number(query, "amount", required=True)
        source = self._currency(query.get("currency_from"), "currency_from")
        target = self._currency(query.get("currency_to"), "currency_to")
        estimated = (self.sandbox.to_usd(amount, source) / self.sandbox.rates[target]).quantize(precision(target))
        return self._json(200, {"currency_from": source, "amount_from": amount, "currency_to": target,
                                "estimated_amount": estimated})

    def _min_amount(self, query: dict[str, str]) -> Response:
        source = self._currency(query.get("currency_from"), "currency_from", crypto_only=True)
        target = self._currency(query.get("currency_to"), "currency_to", crypto_only=True)
        rate = self.sandbox.rates[source]
        minimum = (self.sandbox.min_price_usd / rate).quantize(precision(source), rounding=ROUND_UP)
        body: dict[str, Any] = {"currency_from": source, "currency_to": target, "min_amount": minimum}
        fiat = query.get("fiat_equivalent")
        if fiat:
            fiat = self._currency(fiat, "fiat_equivalent")
            body["fiat_equivalent"] = (minimum * rate / self.sandbox.rates[fiat]).quantize(Decimal("0.00000001"))
        return self._json(200, body)

    # ---- the buyer's browser -----------------------------------------------------------------

    def _page(self, invoice_id: str) -> Response:
        sandbox = self.sandbox
        with sandbox.lock:
            invoice = sandbox.invoices.get(invoice_id)
            if invoice is None:
                return Response.text(404, "<h1>Invoice not found</h1>", content_type="text/html; charset=utf-8")
            state = "expired" if sandbox.is_expired(invoice) else (
                sandbox.payments[invoice.payment_ids[-1]].status if invoice.payment_ids else "open")
            coins = [invoice.pay_currency] if invoice.pay_currency else sorted(
                c for c in sandbox.rates if c not in FIAT)
        options = "".join(f'<option value="{html.escape(c)}">{html.escape(c.upper())}</option>' for c in coins)
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>NOWPayments sandbox invoice</title></head>"
            f"<body><h1>Invoice {html.escape(invoice.id)}</h1>"
            f"<p class='description'>{html.escape(invoice.order_description or '')}</p>"
            f"<p class='price'>{html.escape(jsontext.number_text(invoice.price_amount, 'js'))} "
            f"{html.escape(invoice.price_currency.upper())}</p><p class='status'>{html.escape(state)}</p>"
            f"<form method='post' action='/invoice/{html.escape(invoice.id)}/pay'>"
            f"<select name='currency'>{options}</select><button type='submit'>Pay</button></form>"
            "</body></html>")
        return Response.text(200, page, content_type="text/html; charset=utf-8")

    def _page_pay(self, invoice_id: str, request: Request) -> Response:
        sandbox = self.sandbox
        try:
            sandbox.pay(invoice_id, currency=request.form.get("currency", "eth"),
                        delivery=replace(sandbox.delivery, background=True))
        except SandboxError as error:
            return Response.text(409, f"<p>{html.escape(str(error))}</p>", content_type="text/html; charset=utf-8")
        target = sandbox.invoice(invoice_id).success_url or f"/invoice/{invoice_id}"
        return Response(303, b"", content_type="text/html; charset=utf-8", headers={"Location": target})
