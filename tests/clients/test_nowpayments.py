"""NowPaymentsClient against the NOWPayments sandbox over real loopback HTTP."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from telepay.clients.nowpayments import NowPaymentsClient, ProviderError, ProviderInvoice, ProviderUnavailable
from telepay_sandbox.harness import free_port
from telepay_sandbox.loopback import LoopbackServer, Response
from telepay_sandbox.nowpayments import NowPaymentsSandbox

KEY = "np-client-test-key-0123456789"
SECRET = "np-client-test-ipn-secret"
INVOICE = dict(order_id="inv-9", order_description="Клуб — 30 дней", ipn_callback_url="https://telepay.test/ipn",
               success_url="https://t.me/telepay_bot", cancel_url="https://t.me/telepay_bot")


@pytest.fixture
def sandbox():
    with NowPaymentsSandbox(KEY, SECRET) as np:
        yield np


@pytest.fixture
def client(sandbox):
    with NowPaymentsClient(sandbox.base_url, KEY, timeout=2.0, backoff=0.01) as np_client:
        yield np_client


def _walk(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    else:
        yield value


def test_create_invoice(client, sandbox):
    invoice = client.create_invoice(price_amount=Decimal("12.50"), **INVOICE)
    assert isinstance(invoice, ProviderInvoice)
    assert invoice.price_amount == Decimal("12.5") and isinstance(invoice.price_amount, Decimal)
    assert invoice.order_id == "inv-9"
    assert invoice.invoice_url == f"{sandbox.origin}/invoice/{invoice.id}"
    stored = sandbox.invoice(invoice.id)
    assert (stored.price_amount, stored.order_description, stored.is_fixed_rate) == (
        Decimal("12.5"), "Клуб — 30 дней", True)


def test_amounts_must_be_decimal(client):
    with pytest.raises(TypeError):
        client.create_invoice(price_amount=12.5, **INVOICE)
    with pytest.raises(ValueError):
        client.create_invoice(price_amount=Decimal("-1"), **INVOICE)


def test_refusal_is_a_provider_error_without_the_key(sandbox, caplog):
    with NowPaymentsClient(sandbox.base_url, "wrong-" + KEY, backoff=0.01) as client, \
            caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as raised:
        client.create_invoice(price_amount=Decimal(15), **INVOICE)
    assert (raised.value.status, raised.value.code) == (403, "INVALID_API_KEY")
    assert raised.value.provider_message == "Invalid api key"
    assert KEY not in str(raised.value) and KEY not in caplog.text
    assert len(sandbox.calls) == 1  # a 4xx is never retried


def test_invalid_request_is_a_provider_error(client):
    with pytest.raises(ProviderError) as raised:
        client.create_invoice(price_amount=Decimal("0.10"), **INVOICE)
    assert raised.value.status == 400 and raised.value.provider_message == "amountTo is too small"


@pytest.mark.parametrize("status", [500, 502, 429])
def test_retries_5xx_and_429(client, sandbox, status, caplog):
    sandbox.fail_next("/v1/invoice", status=status, count=2, retry_after=0 if status == 429 else None)
    with caplog.at_level(logging.WARNING):
        invoice = client.create_invoice(price_amount=Decimal(15), **INVOICE)
    assert [c.status for c in sandbox.calls] == [status, status, 201]
    assert len(sandbox.invoices) == 1 and invoice.id in sandbox.invoices
    assert "retry 2 of 3" in caplog.text and KEY not in caplog.text


def test_gives_up_after_the_retries(client, sandbox):
    sandbox.fail_next("/v1/estimate", status=503, count=10)
    with pytest.raises(ProviderUnavailable) as raised:
        client.estimate(Decimal(15), "usd", "eth")
    assert len(sandbox.calls) == 4 and KEY not in str(raised.value)


def test_timeouts_are_retried(sandbox):
    sandbox.fail_next("/v1/min-amount", delay=0.5)
    with NowPaymentsClient(sandbox.base_url, KEY, timeout=0.2, backoff=0.01) as client:
        assert client.min_amount("eth", "trx") == Decimal("0.0004")
    assert len(sandbox.calls) == 2


def test_unreachable_provider_is_unavailable():
    with NowPaymentsClient(f"http://127.0.0.1:{free_port()}/v1", KEY, retries=1, backoff=0.01) as client:
        with pytest.raises(ProviderUnavailable) as raised:
            client.estimate(Decimal(15), "usd", "eth")
    assert "ConnectError" in str(raised.value) and KEY not in str(raised.value)


def test_get_payment_has_decimal_amounts_only(client, sandbox):
    endpoint = LoopbackServer(lambda request: Response(200, b"ok"), "ipn-endpoint")
    endpoint.start()
    invoice = client.create_invoice(price_amount=Decimal(15), **{**INVOICE, "ipn_callback_url": endpoint.origin})
    payment_id = sandbox.pay(invoice.id, amount_usd=Decimal("0.125"))
    payment = client.get_payment(payment_id)
    assert payment["payment_status"] == "partially_paid"
    assert payment["actually_paid"] == Decimal("0.00005") and payment["pay_amount"] == Decimal("0.006")
    assert payment["price_amount"] == Decimal(15) and isinstance(payment["fee"]["serviceFee"], Decimal)
    assert not any(isinstance(v, float) for v in _walk(payment))
    with pytest.raises(ProviderError) as raised:
        client.get_payment(1234567890)
    assert raised.value.status == 404
    endpoint.stop()


def test_estimate_and_min_amount_are_decimal(client):
    assert client.estimate(Decimal(15), "usd", "eth") == Decimal("0.006")
    assert client.min_amount("eth", "trx") == Decimal("0.0004")


def _paid(sandbox, client, count):
    endpoint = LoopbackServer(lambda request: Response(200, b"ok"), "ipn-endpoint")
    endpoint.start()
    invoice = client.create_invoice(price_amount=Decimal(15), **{**INVOICE, "ipn_callback_url": endpoint.origin})
    paid = [sandbox.pay(invoice.id) for _ in range(count)]
    endpoint.stop()
    return paid


def test_list_payments_reads_every_page_with_the_api_key_alone(client, sandbox, monkeypatch):
    monkeypatch.setattr("telepay.clients.nowpayments.LIST_PAGE", 2)
    paid = _paid(sandbox, client, 5)
    now = datetime.now(timezone.utc)
    listed = client.list_payments(now - timedelta(hours=1), now + timedelta(minutes=1))
    assert [item["payment_id"] for item in listed] == paid and listed[0]["order_id"] == "inv-9"
    assert isinstance(listed[0]["actually_paid"], Decimal) and not any(
        isinstance(v, float) for item in listed for v in _walk(item))
    pages = [call.query["page"] for call in sandbox.calls if call.path == "/v1/payment/"]
    assert pages == ["0", "1", "2"]
    assert client.list_payments(now - timedelta(days=3), now - timedelta(days=2)) == []


def test_list_payments_with_a_jwt_fetches_one_and_a_new_one_when_it_expired(sandbox):
    sandbox.list_auth = "jwt"
    sandbox.add_account("ops@example.test", "dashboard-password")
    clock = [0.0]
    with NowPaymentsClient(sandbox.base_url, KEY, backoff=0.01, email="ops@example.test",
                           password="dashboard-password", monotonic=lambda: clock[0]) as client:
        paid = _paid(sandbox, client, 1)
        now = datetime.now(timezone.utc)
        window = (now - timedelta(hours=1), now + timedelta(minutes=1))
        assert [item["payment_id"] for item in client.list_payments(*window)] == paid
        assert [item["payment_id"] for item in client.list_payments(*window)] == paid  # the token is kept
        sandbox.tokens.clear()  # NOWPayments forgot it early: refused once, a new one, served
        assert [item["payment_id"] for item in client.list_payments(*window)] == paid
        clock[0] += 300  # older than we keep one: fetched again before asking
        assert [item["payment_id"] for item in client.list_payments(*window)] == paid
    auths = [call.status for call in sandbox.calls if call.path == "/v1/auth"]
    lists = [call.status for call in sandbox.calls if call.path == "/v1/payment/"]
    assert auths == [200, 200, 200] and lists == [200, 200, 401, 200, 200]
    with NowPaymentsClient(sandbox.base_url, KEY, backoff=0.01) as keyless:  # without the login: refused
        with pytest.raises(ProviderError) as raised:
            keyless.list_payments(*window)
    assert raised.value.status == 401 and raised.value.code == "AUTH_REQUIRED"
